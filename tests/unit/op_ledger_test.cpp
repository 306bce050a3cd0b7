// The op-id ledger's own counting (tests/support/op_ledger.h): a check that could
// not see a loss would make every test that keeps one worthless.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "support/op_ledger.h"

using iocm_test::op_ledger;

TEST_CASE("a balanced ledger is clean; reuse of an id adds up") {
  op_ledger book(4);
  for (std::size_t i = 0; i < 4; ++i) {
    book.accepted(i);
    book.completed(i);
  }
  book.accepted(2);  // the same OVERLAPPED again
  book.completed(2);
  CHECK(!book.answered(3, false));  // refused: counted apart
  const op_ledger::tally t = book.count();
  CHECK(t.clean());
  CHECK(t.accepted == 5);
  CHECK(t.completed == 5);
  CHECK(t.refused == 1);
  op_ledger::tally twice = t;
  twice += t;
  CHECK(twice.accepted == 10);
  CHECK(twice.refused == 2);
  CHECK(book.accepted_count(2) == 2);
  CHECK(book.completed_count(2) == 2);
  CHECK(book.completions() == 5);
}

TEST_CASE("lost, duplicated and unexpected completions are each seen") {
  op_ledger book(5);
  book.accepted(0);  // lost
  book.accepted(1);  // duplicated
  book.completed(1);
  book.completed(1);
  book.completed(2);  // never accepted
  book.completed(9);  // not even an id of the ledger
  book.accepted(3);   // lost twice
  book.accepted(3);
  const op_ledger::tally t = book.count();
  CHECK(!t.clean());
  CHECK(t.lost == 3);
  CHECK(t.duplicated == 1);
  CHECK(t.unexpected == 2);

  char line[256] = {};
  std::FILE* out = fmemopen(line, sizeof line - 1, "w");
  REQUIRE(out != nullptr);
  CHECK(!book.report("broken", out));
  std::fclose(out);
  CHECK(std::strcmp(line,
                    "[ledger] broken: 4 accepted, 4 completed, 3 lost, 1 duplicated, "
                    "2 unexpected, 0 refused\n") == 0);
  book.reset();
  CHECK(book.count().clean());
  CHECK(book.count().accepted == 0);
}

TEST_CASE("completions counted from many threads at once") {
  constexpr std::size_t ids = 10000;
  op_ledger book(ids);
  for (std::size_t i = 0; i < ids; ++i) book.accepted(i);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < ids; i += 4) book.completed(i);
    });
  for (auto& t : threads) t.join();
  CHECK(book.count().clean());
  CHECK(book.completions() == ids);
}
