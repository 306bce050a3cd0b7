// A host of the installed queue alone: 1000 records through a producer
// token and a consumer token, each out once and in order.
#include <cstdio>

#include <iocm/mpmc_queue.h>

int main() {
  iocm::queue_options o;
  o.capacity = 64;
  iocm::mpmc_queue<unsigned> q(o);
  auto producer = q.make_producer();
  auto consumer = q.make_consumer();
  unsigned next = 0;
  for (unsigned i = 0; i < 1000; ++i) {
    if (!q.try_enqueue(producer, i)) return 10;
    unsigned out = 0;
    if (!q.try_dequeue(consumer, out) || out != next++) return 11;
  }
  unsigned extra = 0;
  if (q.try_dequeue(consumer, extra)) return 12;
  std::printf("iocm::queue: %u records, in order\n", next);
  return 0;
}
