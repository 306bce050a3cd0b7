// The completion queue: one shard per NUMA node with a poller, each poller
// with its own lane of its node's shard (docs/QUEUE.md). Pollers publish
// into it; notifiers (or a pumped engine's pump) take from it.
#pragma once

#include "iocm/completion.h"
#include "iocm/mpmc_queue.h"
#include "iocm/sharded_queue.h"

namespace iocm::detail {

using completion_queue = sharded_queue<mpmc_queue<completion, std::atomic, lane_summary::on>>;

}  // namespace iocm::detail
