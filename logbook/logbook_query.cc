#include "logbook/logbook_query.h"

#include <cctype>

#include "common/util.h"

namespace vigil {

using nlohmann::json;

json EntryJson(const LogbookEntry& e) {
  json j{{"type", e.type},       {"id", e.id},
         {"run_id", e.run_id},   {"time", FormatTimeMicros(e.time_us)},
         {"time_us", e.time_us}, {"what", e.what}};
  if (e.generation) j["generation"] = *e.generation;
  if (!e.host.empty()) j["host"] = e.host;
  if (e.rank) j["rank"] = *e.rank;
  if (e.step) j["step"] = *e.step;
  if (e.event_id) j["event_id"] = *e.event_id;
  if (!e.actor.empty()) j["actor"] = e.actor;
  j["detail"] = json::parse(e.detail_json, nullptr, false);
  return j;
}

namespace {

Result<std::string> PercentDecode(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
          !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
        return Status::InvalidArgument("bad percent-escape in '" + in + "'");
      }
      out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

Result<int64_t> NonNegative(const std::string& key, const std::string& value) {
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size() || v < 0)
    return Status::InvalidArgument(key + ": expected a non-negative integer, got '" + value + "'");
  return v;
}

}  // namespace

Result<EntryFilter> ParseEntryQuery(const std::string& query, int64_t now_us, size_t default_last) {
  EntryFilter f;
  f.last = default_last;
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string pair = query.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto key = PercentDecode(pair.substr(0, eq));
    auto value = PercentDecode(eq == std::string::npos ? "" : pair.substr(eq + 1));
    if (!key.ok()) return key.status();
    if (!value.ok()) return value.status();
    const std::string& k = key.value();
    const std::string& v = value.value();
    if (k == "since" || k == "until") {
      auto t = ParseTimePoint(v, now_us);
      if (!t.ok()) return Status::InvalidArgument(k + ": " + t.status().message());
      (k == "since" ? f.since_us : f.until_us) = t.value();
    } else if (k == "kind") {
      f.kinds.push_back(v);
    } else if (k == "host") {
      f.host = v;
    } else if (k == "actor") {
      f.actor = v;
    } else if (k == "run" || k == "rank" || k == "last") {
      auto n = NonNegative(k, v);
      if (!n.ok()) return n.status();
      if (k == "run") f.run_id = n.value();
      if (k == "rank") f.rank = static_cast<int>(n.value());
      if (k == "last") f.last = static_cast<size_t>(n.value());
    } else {
      return Status::InvalidArgument("unknown parameter '" + k +
                                     "' (run, since, until, kind, host, rank, actor, last)");
    }
  }
  return f;
}

}  // namespace vigil
