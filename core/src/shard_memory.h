// Each completion-queue shard's memory: on its NUMA node when that can be
// applied here, and the address of its first block, so that the engine can
// say where the memory really landed (docs/NUMA.md).
#pragma once

#include <memory>
#include <memory_resource>
#include <vector>

#include "placement.h"

namespace iocm::detail {

class shard_memory final : public std::pmr::memory_resource {
 public:
  /// One per shard of `plan`, bound to the shard's node where `reach`
  /// allows. Throws std::bad_alloc.
  static std::vector<std::unique_ptr<shard_memory>> for_plan(const placement_plan& plan,
                                                             const placement_reach& reach);

  /// The node the first block was found on, or -1 (nothing allocated yet,
  /// or unknown).
  int found_on_node() const noexcept;

 private:
  std::pmr::memory_resource& upstream() const {
    return node_ ? *node_ : *std::pmr::get_default_resource();
  }
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    upstream().deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }

  std::unique_ptr<std::pmr::memory_resource> node_;  // null: the default resource
  void* first_ = nullptr;
};

}  // namespace iocm::detail
