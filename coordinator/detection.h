// A Detection: what a detector saw, and all it reports. Detectors only
// report; the journal records the detection as one `events` row, the
// playbook decides about it and the recovery planner plans the answer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vigil::coordinator {

struct Detection {
  std::string kind;  // common/vocabulary.h's kind::*
  std::string host;  // the host it concerns ("" for the whole job)
  std::optional<int> rank;
  std::vector<int64_t> codes;  // exit code, 128 + signal, GPU Xid
  int64_t time_us = 0;         // when it was seen (a GPU fault: when the agent saw it)
  int agent = -1;              // the agent of `host`, -1 if none
  // The step it concerns (numerics: the step whose update is suspect; the
  // checkpoints from it on may hold it). None: the job's current step.
  std::optional<int64_t> step;
  nlohmann::json detail = nlohmann::json::object();
  std::string summary;  // one line for people
};

}  // namespace vigil::coordinator
