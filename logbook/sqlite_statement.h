// The logbook's SQLite plumbing, shared by the files that implement Logbook
// (logbook.cc, logbook_schema.cc, logbook_reads.cc, logbook_entries.cc,
// logbook_stats.cc): a statement that binds, steps and cleans up after
// itself, and the column readers. Internal to logbook/: not part of its API.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>

#include "common/status.h"

namespace vigil::logbook_detail {

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db), owned_(true) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  // One the connection keeps prepared (Logbook::Statement): reset, not
  // finalized, when done with.
  Stmt(sqlite3* db, sqlite3_stmt* kept)
      : db_(db), stmt_(kept), rc_(kept ? SQLITE_OK : SQLITE_ERROR), owned_(false) {}
  ~Stmt() {
    if (owned_) {
      sqlite3_finalize(stmt_);
    } else if (stmt_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Status Prepared() const {
    return rc_ == SQLITE_OK
               ? Status::Ok()
               : Status::IoError(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  template <typename T>
  Stmt& Bind(int i, const std::optional<T>& v) {
    if (v)
      return Bind(
          i, static_cast<std::conditional_t<std::is_floating_point_v<T>, double, int64_t>>(*v));
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // Makes the statement ready to bind and run again.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  // Runs a statement that returns no rows.
  Status Run() {
    VIGIL_RETURN_IF_ERROR(Prepared());
    int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_DONE) return Status::IoError(std::string("sqlite: ") + sqlite3_errmsg(db_));
    return Status::Ok();
  }
  // Iterates rows; returns an error if stepping fails.
  Status ForEach(const std::function<void(sqlite3_stmt*)>& row) {
    VIGIL_RETURN_IF_ERROR(Prepared());
    while (true) {
      int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) {
        row(stmt_);
        continue;
      }
      if (rc == SQLITE_DONE) return Status::Ok();
      return Status::IoError(std::string("sqlite: ") + sqlite3_errmsg(db_));
    }
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  bool owned_;
};

// Column readers: text ("" for NULL), and an integer or real that may be NULL.
inline std::string Text(sqlite3_stmt* s, int col) {
  const unsigned char* t = sqlite3_column_text(s, col);
  return t ? reinterpret_cast<const char*>(t) : "";
}
inline std::optional<int64_t> OptInt(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(s, col);
}
inline std::optional<double> OptReal(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_double(s, col);
}

}  // namespace vigil::logbook_detail
