// Defects not fixed yet on main, each case that fails because of one, per configuration (a pattern
// over their names): issue 12's defects by number, and what this suite found beyond them by a short
// name (docs/conformance.md says what each is). The case must fail now; when the fix lands the suite
// says the case passes, and the entry goes.
export interface ExpectedFailure {
  case: string;
  configs: RegExp;
  defect: number | string;
  /** The defect shows or not depending on what the case cannot hold still (a clock tick between two calls): the case may pass. */
  sometimes?: true;
}


export const EXPECTED_FAILURES: ExpectedFailure[] = [
  // Issue 12's defects 1-5 failed here until their fixes reached main (paths, links, redirects, mknod 0/0).
  // found by this suite and fixed: new-file-times (a new upper object was chowned to its maker and renamed into place after it was made, which moved its ctime).
];

export function expectedFailure(name: string, config: string): ExpectedFailure | undefined {
  return EXPECTED_FAILURES.find((e) => e.case === name && e.configs.test(config));
}
