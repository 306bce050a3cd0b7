// iocm-plaintext: an HTTP/1.1 server driven through iocm's hosting ABI that
// answers every request with "Hello, World!" (the TechEmpower plaintext
// test): keep-alive, and pipelined requests answered in order, in one send.
//
// It reads requests without bodies (GET, HEAD, ...). A request line that is
// not HTTP/1.x, a request with a body (Content-Length other than 0, or
// Transfer-Encoding) gets "400 Bad Request" and the connection is closed;
// "Connection: close" and HTTP/1.0 close it after the reply; a request head
// over 16 KiB closes it without one.
#include <algorithm>
#include <ctime>

#include "server.h"

namespace {

constexpr std::string_view bad_request =
    "HTTP/1.1 400 Bad Request\r\nServer: iocm\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// "Date: ..." as HTTP wants it, formatted at most once a second per thread.
std::string_view date_header() {
  thread_local std::time_t second = -1;
  thread_local char text[64];
  thread_local std::size_t size = 0;
  const std::time_t now = std::time(nullptr);
  if (now != second) {
    std::tm t{};
    ::gmtime_r(&now, &t);
    size = std::strftime(text, sizeof text, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &t);
    second = now;
  }
  return {text, size};
}

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char a = line[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != name[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool contains_token(std::string_view v, std::string_view token) {
  for (std::size_t i = 0; i + token.size() <= v.size(); ++i)
    if (iequals_prefix(v.substr(i), token)) return true;
  return false;
}

enum class verdict { keep_alive, close_after, bad };

/// Judges one request head (request line and headers, without the final
/// blank line).
verdict judge(std::string_view head) {
  const std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const std::size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos || sp2 == sp1) return verdict::bad;
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return verdict::bad;
  verdict v = version == "HTTP/1.1" ? verdict::keep_alive : verdict::close_after;
  std::string_view rest = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
  while (!rest.empty()) {
    const std::size_t e = rest.find("\r\n");
    const std::string_view h = rest.substr(0, e);
    rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e + 2);
    if (iequals_prefix(h, "content-length:")) {
      if (trim(h.substr(15)) != "0") return verdict::bad;
    } else if (iequals_prefix(h, "transfer-encoding:")) {
      return verdict::bad;
    } else if (iequals_prefix(h, "connection:")) {
      const std::string_view value = h.substr(11);
      if (contains_token(value, "close"))
        v = verdict::close_after;
      else if (contains_token(value, "keep-alive"))
        v = verdict::keep_alive;
    }
  }
  return v;
}

struct plaintext {
  static constexpr const char* name = "iocm-plaintext";
  struct state {
    char out[32 * 1024];
  };

  /// Answers every complete request in the buffer (as many as fit in one
  /// reply); a partial request stays for the next receive.
  static iocm_host::reply answer(state& s, iocm_host::buffer& in) {
    static constexpr std::string_view status = "HTTP/1.1 200 OK\r\nServer: iocm\r\n";
    static constexpr std::string_view rest =
        "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
    const std::string_view date = date_header();
    const std::size_t one = status.size() + date.size() + rest.size();
    iocm_host::reply r{s.out, 0, false};
    auto put = [&](std::string_view v) {
      std::memcpy(s.out + r.size, v.data(), v.size());
      r.size += static_cast<std::uint32_t>(v.size());
    };
    while (r.size + std::max(one, bad_request.size()) <= sizeof s.out) {
      const std::string_view pending(in.bytes + in.begin, in.end - in.begin);
      const std::size_t end = pending.find("\r\n\r\n");
      if (end == std::string_view::npos) break;
      in.begin += static_cast<std::uint32_t>(end + 4);
      const verdict v = judge(pending.substr(0, end));
      if (v == verdict::bad) {
        put(bad_request);
        r.close_after = true;
        break;
      }
      put(status);
      put(date);
      put(rest);
      if (v == verdict::close_after) {
        r.close_after = true;
        break;
      }
    }
    return r;
  }
};

}  // namespace

int main(int argc, char** argv) {
  return iocm_host::host_main<plaintext>(
      argc, argv,
      "An HTTP/1.1 \"Hello, World!\" server (keep-alive, pipelining) on iocm's hosting ABI.");
}
