// Small N-API helpers: argument fetching with type checks that throw TypeError (a JS bug, never
// a kernel request failing), and latin1 byte strings, which carry any name byte but NUL.
#include "tsn.h"

#include <stdlib.h>

tsn_env *tsn_env_of(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return data;
}

napi_value tsn_undefined(napi_env env) {
  napi_value v = NULL;
  napi_get_undefined(env, &v);
  return v;
}

napi_value tsn_bool(napi_env env, int b) {
  napi_value v = NULL;
  napi_get_boolean(env, b != 0, &v);
  return v;
}

napi_value tsn_throw(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

// 0 when exactly `want` arguments (or more) arrived; otherwise a TypeError is pending.
int tsn_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    tsn_throw(env, "tarstack_native: too few arguments");
    return -1;
  }
  return 0;
}

int tsn_num(napi_env env, napi_value v, double *out) {
  if (napi_get_value_double(env, v, out) != napi_ok) {
    tsn_throw(env, "tarstack_native: expected a number");
    return -1;
  }
  return 0;
}

char *tsn_latin1(napi_env env, napi_value v, size_t *len) {
  size_t n = 0;
  if (napi_get_value_string_latin1(env, v, NULL, 0, &n) != napi_ok) {
    tsn_throw(env, "tarstack_native: expected a string");
    return NULL;
  }
  char *s = malloc(n + 1);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "tarstack_native: out of memory");
    return NULL;
  }
  if (napi_get_value_string_latin1(env, v, s, n + 1, &n) != napi_ok) {
    free(s);
    tsn_throw(env, "tarstack_native: expected a string");
    return NULL;
  }
  if (len != NULL) *len = n;
  return s;
}
