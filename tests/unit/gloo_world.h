// Runs `world` ranks as threads of this process, each with a real Gloo TCP
// context on 127.0.0.1, rendezvoused through an in-memory store. The ranks'
// collectives cross real sockets; only the bootstrap is in memory.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <gloo/rendezvous/hash_store.h>
#include <omp.h>

#include "worker/trainer/collectives.h"

namespace vigil::testing {

inline void RunWorld(int world, const std::function<void(trainer::Collectives&)>& body) {
  if (world == 1) {
    trainer::GlooCollectives single;
    body(single);
    return;
  }
  gloo::rendezvous::HashStore store;
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        omp_set_num_threads(1);
        trainer::GlooCollectives coll(
            trainer::ConnectTcpMesh(store, r, world, "127.0.0.1", std::chrono::seconds(30)));
        body(coll);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace vigil::testing
