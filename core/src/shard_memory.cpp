// Each completion-queue shard's memory (shard_memory.h).
#include "shard_memory.h"

#include "os.h"

namespace iocm::detail {

std::vector<std::unique_ptr<shard_memory>> shard_memory::for_plan(const placement_plan& plan,
                                                                  const placement_reach& reach) {
  std::vector<std::unique_ptr<shard_memory>> v;
  for (const auto& s : plan.shards) {
    v.push_back(std::make_unique<shard_memory>());
    if (reach.can_bind(s.node_os)) v.back()->node_ = os::node_memory(s.node_os);
  }
  return v;
}

void* shard_memory::do_allocate(std::size_t bytes, std::size_t alignment) {
  void* p = upstream().allocate(bytes, alignment);
  if (first_ == nullptr) first_ = p;
  return p;
}

int shard_memory::found_on_node() const noexcept {
  return first_ != nullptr ? os::node_of_address(first_) : -1;
}

}  // namespace iocm::detail
