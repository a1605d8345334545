# Paths near and past PATH_MAX inside a mount, relative to the current directory (the mount's root):
# `make` builds and changes them, `check` reads what `make` left (also after a remount), `remove`
# takes it all away. A failure prints one line and exits 1. The caller's own paths stay below
# PATH_MAX; the mount's upper and lowers must add nothing to them.
import os, subprocess, sys

N = 'd' * 250
LONG = '/'.join([N] * 16)                 # 4,015 bytes
F, G, H = (LONG + '/' + c * 30 for c in 'fgh')  # 4,046 bytes
MOVED = 'moved/' + '/'.join([N] * 15)   # the first LONG, renamed at its top
LOWER = '/'.join(['L' * 250] * 16)       # a chain in the lower layer
LOWER_FILE = LOWER + '/' + 'l' * 40     # 4,056 bytes
C = 'c' * 100
DEPTH = int(os.environ.get('DEPTH', '60'))  # 6,060 bytes below 'chain', 60 names


def fail(msg):
    print(f'long-paths: {msg}', file=sys.stderr)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def read(p):
    with open(p, 'rb') as f:
        return f.read()


def write(p, data, mode='wb'):
    with open(p, mode) as f:
        f.write(data)


def chain(make):
    """Down a DEPTH-deep chain of C directories, by chdir; back up by the saved descriptor."""
    top = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir('chain')
        for _ in range(DEPTH):
            if make:
                os.mkdir(C)
            os.chdir(C)
        return top
    except BaseException:
        os.fchdir(top)
        os.close(top)
        raise


def make():
    expect(read(LOWER_FILE) == b'lower', 'the lower file at 4,056 bytes reads back')
    write(LOWER + '/' + 'n' * 30, b'made')  # a new file where only the lower has the directories
    write(LOWER_FILE, b'+up', 'ab')      # copy-up of a deep lower file and its parents
    os.makedirs(LONG)
    write(F, b'hello')
    st = os.stat(F)
    expect(st.st_size == 5 and read(F) == b'hello', 'a new file at 4,046 bytes is created, stat-ed and read')
    os.rename(F, G)
    expect(not os.path.lexists(F) and read(G) == b'hello', 'renamed')
    os.link(G, H)
    expect(os.stat(G).st_nlink == 2 and os.stat(G).st_ino == os.stat(H).st_ino, 'hard-linked')
    os.unlink(H)
    expect(os.stat(G).st_nlink == 1 and not os.path.lexists(H), 'a link removed')
    os.symlink('target', LONG + '/s')
    expect(os.readlink(LONG + '/s') == 'target', 'a symlink made and read')
    os.mkfifo(LONG + '/p')
    os.setxattr(G, 'user.k', b'v')
    expect(os.getxattr(G, 'user.k') == b'v', 'an xattr set and read')
    os.chmod(G, 0o640)
    os.utime(G, ns=(1_000_000_001, 2_000_000_002))
    st = os.stat(G)
    expect(st.st_mode & 0o777 == 0o640 and st.st_mtime_ns == 2_000_000_002, 'chmod and utimensat')
    os.mkdir(LONG + '/gone')
    os.rmdir(LONG + '/gone')
    # A directory renamed above deep ones, and the same names made again: each tree keeps its own.
    os.rename(N, 'moved')
    os.makedirs(LONG)
    write(F, b'again')
    expect(read(MOVED + '/' + 'g' * 30) == b'hello' and read(F) == b'again', 'renamed trees keep their files')
    os.rename(LOWER, LONG + '/../lower-moved')  # a deep directory moved across, its copied-up file along
    # The chain: past PATH_MAX by far below the mount's root, each step short for the caller.
    os.mkdir('chain')
    top = chain(True)
    try:
        write('leaf', b'deep')
        os.rename('leaf', 'leaf2')
        os.link('leaf2', 'leaf3')
        expect(os.stat('leaf3').st_nlink == 2, 'a hard link at the bottom of the chain')
        os.unlink('leaf3')
        os.mkdir('sub')
        os.rename('sub', 'sub2')
        expect(read('leaf2') == b'deep' and os.stat('leaf2').st_nlink == 1, 'the chain\'s leaf')
    finally:
        os.fchdir(top)
        os.close(top)


def check():
    expect(read(MOVED + '/' + 'g' * 30) == b'hello', 'the moved file')
    expect(os.getxattr(MOVED + '/' + 'g' * 30, 'user.k') == b'v', 'its xattr')
    expect(os.stat(MOVED + '/' + 'g' * 30).st_mtime_ns == 2_000_000_002, 'its mtime')
    expect(os.readlink(MOVED + '/s') == 'target', 'the symlink')
    expect(read(F) == b'again', 'the file made again')
    moved_lower = LONG + '/../lower-moved/' + 'l' * 40
    expect(read(moved_lower) == b'lower+up', 'the copied-up lower file, moved with its directory')
    expect(read(LONG + '/../lower-moved/' + 'n' * 30) == b'made', 'the file made in the lower directory, moved with it')
    expect(not os.path.lexists(LOWER), 'the lower chain moved away')
    top = chain(False)
    try:
        expect(read('leaf2') == b'deep' and os.path.isdir('sub2') and not os.path.lexists('leaf'), 'the chain\'s bottom')
    finally:
        os.fchdir(top)
        os.close(top)


def remove():
    subprocess.run(['rm', '-rf', 'moved', N, 'chain'], check=True)  # rm walks by descriptors, at any depth
    expect(sorted(os.listdir('.')) == ['L' * 250], 'only the lower chain\'s top is left')


{'make': make, 'check': check, 'remove': remove}[sys.argv[1]]()
