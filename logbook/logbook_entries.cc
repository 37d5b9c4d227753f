// `vigil logbook ls` and /api/v1/events: the events, interventions and
// notes of a run (or of all runs) that an EntryFilter picks, merged by time,
// in one compound SELECT built so that each part walks an index.
#include "logbook/logbook.h"

#include <algorithm>
#include <variant>

#include "logbook/sqlite_statement.h"

namespace vigil {
namespace {

using logbook_detail::OptInt;
using logbook_detail::Stmt;
using logbook_detail::Text;

// `vigil logbook ls --actor KIND` walks each actor's index range on its own
// up to this many actors (SQLite allows 500 parts in one compound SELECT).
constexpr size_t kMaxActorParts = 200;

}  // namespace

Result<std::vector<LogbookEntry>> Logbook::Entries(std::optional<int64_t> run_id) {
  EntryFilter f;
  f.run_id = run_id;
  return Entries(f);
}

Result<std::vector<std::string>> Logbook::ActorsOfKind(const std::string& kind) {
  // The distinct actors in [kind, kind;) through the actor index, one index
  // step each (a loose index scan); ';' follows ':'.
  Stmt s(db_,
         "WITH RECURSIVE a(actor) AS ("
         " SELECT min(actor) FROM interventions WHERE actor >= ?1 AND actor < ?2"
         " UNION ALL SELECT (SELECT min(actor) FROM interventions WHERE actor > a.actor AND "
         " actor < ?2) FROM a WHERE a.actor IS NOT NULL) "
         "SELECT actor FROM a WHERE actor = ?1 OR substr(actor, 1, length(?1) + 1) = ?1 || ':'");
  s.Bind(1, kind).Bind(2, kind + ";");
  std::vector<std::string> out;
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) { out.push_back(Text(r, 0)); }));
  return out;
}

Result<std::vector<LogbookEntry>> Logbook::Entries(const EntryFilter& f) {
  // Built from the filters given, so that each part can use its index.
  std::vector<std::variant<int64_t, std::string>> params;
  auto param = [&](std::variant<int64_t, std::string> v) {
    params.push_back(std::move(v));
    return "?" + std::to_string(params.size());
  };
  auto in_list = [&](const std::string& column) {
    std::string sql = column + " IN (";
    for (size_t i = 0; i < f.kinds.size(); ++i) sql += (i ? "," : "") + param(f.kinds[i]);
    return sql + ")";
  };
  // An exact actor ("human:alice"), or a bare kind ("human", "auto") that
  // matches itself ("chaos") and every actor of it ("human:...").
  auto actor_matches = [&](const std::string& column) {
    if (f.actor.find(':') != std::string::npos) return column + " = " + param(f.actor);
    const std::string kind = param(f.actor);
    return "(" + column + " = " + kind + " OR substr(" + column + ", 1, length(" + kind +
           ") + 1) = " + kind + " || ':')";
  };
  auto common = [&](const std::string& table, int64_t after, std::optional<int64_t> upto) {
    std::string w = table + ".id > " + param(after);
    if (upto) w += " AND " + table + ".id <= " + param(*upto);
    if (f.run_id) w += " AND " + table + ".run_id = " + param(*f.run_id);
    if (f.since_us) w += " AND " + table + ".time_us >= " + param(*f.since_us);
    if (f.until_us) w += " AND " + table + ".time_us < " + param(*f.until_us);
    return w;
  };
  const bool want_note =
      f.kinds.empty() || std::find(f.kinds.begin(), f.kinds.end(), "note") != f.kinds.end();
  struct Part {
    std::string alias, select, where;  // select: "SELECT ... FROM table alias [JOIN ...]"
  };
  std::vector<Part> parts;
  if (f.actor.empty()) {
    std::string w =
        common("e", f.after.event, f.upto ? std::optional(f.upto->event) : std::nullopt);
    if (!f.kinds.empty()) w += " AND " + in_list("e.kind");
    if (!f.host.empty()) w += " AND e.host = " + param(f.host);
    if (f.rank) w += " AND e.rank = " + param(static_cast<int64_t>(*f.rank));
    parts.push_back(
        {"e",
         "SELECT 'event' AS type, e.id, e.run_id, e.time_us AS time_us, g.number, e.kind, e.host, "
         "e.rank, e.step, NULL, '', e.detail FROM events e LEFT JOIN generations g ON g.id = "
         "e.generation_id",
         w});
  }
  std::vector<std::string> actors;  // interventions' parts: one per actor, or one for all
  if (f.actor.empty()) {
    actors.emplace_back();
  } else if (f.actor.find(':') != std::string::npos) {
    actors.push_back(f.actor);
  } else {
    auto of_kind = ActorsOfKind(f.actor);
    if (!of_kind.ok()) return of_kind.status();
    actors = std::move(of_kind.value());
    // Past SQLite's compound-select limit, one part with every such actor (sorted, not walked).
    if (actors.size() > kMaxActorParts) actors = {""};
  }
  for (const std::string& actor : actors) {
    std::string w = common("i", f.after.intervention,
                           f.upto ? std::optional(f.upto->intervention) : std::nullopt);
    if (!f.kinds.empty()) w += " AND " + in_list("i.action");
    if (!f.host.empty()) w += " AND i.host = " + param(f.host);
    if (f.rank) w += " AND i.rank = " + param(static_cast<int64_t>(*f.rank));
    if (!actor.empty()) {
      w += " AND i.actor = " + param(actor);
    } else if (!f.actor.empty()) {
      w += " AND " + actor_matches("i.actor");
    }
    parts.push_back(
        {"i",
         "SELECT 'intervention', i.id, i.run_id, i.time_us, NULL, i.action, i.host, i.rank, "
         "NULL, i.event_id, i.actor, json_object('params', json(i.params), 'outcome', "
         "i.outcome) FROM interventions i",
         w});
  }
  if (want_note && f.host.empty() && !f.rank) {
    std::string w = common("n", f.after.note, f.upto ? std::optional(f.upto->note) : std::nullopt);
    // A note's actor is "human:<author>".
    if (!f.actor.empty()) w += " AND " + actor_matches("('human:' || n.author)");
    parts.push_back({"n",
                     "SELECT 'note', n.id, n.run_id, n.time_us, NULL, 'note', '', NULL, NULL, "
                     "NULL, 'human:' || n.author, json_object('text', n.text) FROM notes n",
                     w});
  }
  // With `last`, each part takes only its newest `last` rows before the
  // merge: walking its time index (or the filter's: (actor, time_us) for one
  // actor), the newest 50 of ten million cost a few index steps, not a sort
  // of everything.
  std::string sql;
  for (const auto& p : parts) {
    const std::string& a = p.alias;
    std::string part = p.select + " WHERE " + p.where;
    if (f.last) {
      part = "SELECT * FROM (" + part + " ORDER BY " + a + ".time_us DESC, " + a +
             ".id DESC LIMIT " + std::to_string(f.last) + ")";
    }
    sql += (sql.empty() ? "" : " UNION ALL ") + part;
  }
  // The newest `last`, read newest first, then put back in order.
  sql += f.last ? " ORDER BY 4 DESC, 1 DESC, 2 DESC LIMIT " + std::to_string(f.last)
                : " ORDER BY 4, 1, 2";
  Stmt s(db_, sql.c_str());
  for (size_t i = 0; i < params.size(); ++i) {
    if (const auto* v = std::get_if<int64_t>(&params[i]))
      s.Bind(static_cast<int>(i + 1), *v);
    else
      s.Bind(static_cast<int>(i + 1), std::get<std::string>(params[i]));
  }
  std::vector<LogbookEntry> out;
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    LogbookEntry e;
    e.type = Text(r, 0);
    e.id = sqlite3_column_int64(r, 1);
    e.run_id = sqlite3_column_int64(r, 2);
    e.time_us = sqlite3_column_int64(r, 3);
    e.generation = OptInt(r, 4);
    e.what = Text(r, 5);
    e.host = Text(r, 6);
    if (auto rank = OptInt(r, 7)) e.rank = static_cast<int>(*rank);
    e.step = OptInt(r, 8);
    e.event_id = OptInt(r, 9);
    e.actor = Text(r, 10);
    e.detail_json = Text(r, 11);
    out.push_back(std::move(e));
  }));
  if (f.last) std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace vigil
