// iocm-echo: a TCP echo server driven through iocm's hosting ABI. Every
// byte received is sent back, in order, on the same connection.
#include "server.h"

namespace {

struct echo {
  static constexpr const char* name = "iocm-echo";
  struct state {};
  /// The reply is the input itself; it is consumed as it goes out.
  static iocm_host::reply answer(state&, iocm_host::buffer& in) {
    iocm_host::reply r{in.bytes + in.begin, in.end - in.begin, false};
    in.begin = in.end;
    return r;
  }
};

}  // namespace

int main(int argc, char** argv) {
  return iocm_host::host_main<echo>(argc, argv, "A TCP echo server on iocm's hosting ABI.");
}
