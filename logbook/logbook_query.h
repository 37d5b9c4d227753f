// What the CLI and vigild's HTTP API share about reading the logbook: an
// entry as JSON, and an EntryFilter from a URL query string
// (`/api/v1/events?since=2h&kind=rank_hang&kind=host_lost&host=h7&last=50`).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "logbook/logbook.h"

namespace vigil {

// {"type", "id", "run_id", "time", "time_us", "what", "generation", "host",
//  "rank", "step", "event_id", "actor", "detail"}; absent fields left out.
nlohmann::json EntryJson(const LogbookEntry& e);

// Keys: run, since, until (ParseTimePoint forms), kind (repeatable), host,
// rank, actor, last. Values are percent-decoded. An unknown key or a bad
// value is an error naming it; `last` defaults to `default_last`.
Result<EntryFilter> ParseEntryQuery(const std::string& query, int64_t now_us, size_t default_last);

}  // namespace vigil
