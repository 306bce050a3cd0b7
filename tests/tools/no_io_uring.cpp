// no_io_uring: runs a command in a process where io_uring cannot be set up,
// as on a kernel with kernel.io_uring_disabled = 2 or in a container whose
// seccomp profile refuses io_uring. A test-only tool: CTest runs engine tests
// under it (tests/CMakeLists.txt, io_uring_refused_*).
//
//   no_io_uring COMMAND [ARGS...]
//
// It installs a seccomp filter that answers io_uring_setup with EPERM (what
// the sysctl answers) and lets every other call of this architecture
// through, then execs the command; the filter holds for it and everything it
// starts. PR_SET_NO_NEW_PRIVS first, so no privilege is needed. Exits 2 when
// the filter cannot be installed or does not hold, 127 when the command
// cannot be run.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#if defined(__x86_64__)
#define IOCM_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define IOCM_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

namespace {

#ifdef IOCM_AUDIT_ARCH
bool refuse_io_uring_setup() {
  // Syscall numbers are per architecture: a call made under another one
  // (a 32-bit compat call) is refused with ENOSYS, never judged by number.
  sock_filter program[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IOCM_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
#ifdef __x86_64__
      // x32 calls share the architecture, with this bit set in the number.
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~static_cast<__u32>(__X32_SYSCALL_BIT)),
#endif
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(sizeof program / sizeof program[0]);
  fprog.filter = program;
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    std::fprintf(stderr, "no_io_uring: PR_SET_NO_NEW_PRIVS: %s\n", std::strerror(errno));
    return false;
  }
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
    std::fprintf(stderr, "no_io_uring: seccomp: %s\n", std::strerror(errno));
    return false;
  }
  // The filter must hold: io_uring_setup(0, null) is refused before the
  // kernel looks at its arguments.
  errno = 0;
  if (::syscall(__NR_io_uring_setup, 0, nullptr) != -1 || errno != EPERM) {
    std::fprintf(stderr, "no_io_uring: io_uring_setup was not refused by the filter (%s)\n",
                 std::strerror(errno));
    return false;
  }
  return true;
}
#else
bool refuse_io_uring_setup() {
  std::fprintf(stderr, "no_io_uring: not built for this architecture\n");
  return false;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: no_io_uring COMMAND [ARGS...]\n");
    return 2;
  }
  if (!refuse_io_uring_setup()) return 2;
  ::execvp(argv[1], argv + 1);
  std::fprintf(stderr, "no_io_uring: %s: %s\n", argv[1], std::strerror(errno));
  return 127;
}
