// Reads YAML documents field by field, remembering the first error with its
// position: "file.yaml:7:12: model.d_model: expected a positive integer, got
// 'abc'". Unknown keys are errors too. Shared by the job spec and playbooks.
#pragma once

#include <functional>
#include <set>
#include <sstream>
#include <string>

#include <yaml-cpp/yaml.h>

#include "common/status.h"

namespace vigil {

// Walks a YAML mapping, remembering the first error with its position.
class YamlReader {
 public:
  explicit YamlReader(std::string source) : source_(std::move(source)) {}

  void Fail(const YAML::Node& node, const std::string& field, const std::string& what) {
    if (!error_.ok()) return;
    std::ostringstream os;
    os << source_;
    if (node.IsDefined() && node.Mark().line >= 0) {
      os << ":" << node.Mark().line + 1 << ":" << node.Mark().column + 1;
    }
    os << ": " << field << ": " << what;
    error_ = Status::InvalidArgument(os.str());
  }
  const Status& error() const { return error_; }

  // Visits a mapping, rejecting keys that are not in `known`.
  void Section(const YAML::Node& parent, const std::string& key, const std::string& path,
               const std::set<std::string>& known, bool required,
               const std::function<void(const YAML::Node&, const std::string&)>& body) {
    if (!error_.ok()) return;
    YAML::Node node = key.empty() ? parent : parent[key];
    const std::string here = path.empty() ? key : (key.empty() ? path : path + "." + key);
    if (!node.IsDefined() || node.IsNull()) {
      if (required) Fail(parent, here, "required section is missing");
      return;
    }
    if (!node.IsMap()) {
      Fail(node, here.empty() ? "(top level)" : here, "expected a mapping");
      return;
    }
    for (const auto& kv : node) {
      const std::string k = kv.first.Scalar();
      if (!known.count(k)) {
        std::string list;
        for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
        Fail(kv.first, here.empty() ? k : here + "." + k, "unknown field (known: " + list + ")");
        return;
      }
    }
    body(node, here);
  }

  template <typename T>
  void Field(const YAML::Node& map, const std::string& path, const std::string& key, T* out,
             const std::function<bool(const T&)>& valid = nullptr, const char* expect = nullptr) {
    if (!error_.ok()) return;
    YAML::Node node = map[key];
    const std::string here = path.empty() ? key : path + "." + key;
    if (!node.IsDefined() || node.IsNull()) return;  // keep the default
    if (!node.IsScalar()) {
      Fail(node, here, "expected a scalar value");
      return;
    }
    T value{};
    try {
      value = node.as<T>();
    } catch (const YAML::Exception&) {
      Fail(node, here,
           std::string("expected ") + (expect ? expect : TypeName<T>()) + ", got '" +
               node.Scalar() + "'");
      return;
    }
    if (valid && !valid(value)) {
      Fail(node, here,
           std::string("expected ") + (expect ? expect : TypeName<T>()) + ", got '" +
               node.Scalar() + "'");
      return;
    }
    *out = value;
  }

  void Required(const YAML::Node& map, const std::string& path, const std::string& key) {
    if (!error_.ok()) return;
    if (!map[key].IsDefined() || map[key].IsNull()) {
      Fail(map, path.empty() ? key : path + "." + key, "required field is missing");
    }
  }

 private:
  template <typename T>
  static const char* TypeName() {
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    if constexpr (std::is_same_v<T, double>) return "a number";
    if constexpr (std::is_same_v<T, uint64_t>) return "a non-negative integer";
    return "an integer";
  }
  std::string source_;
  Status error_;
};

// Parses a whole document; a syntax error names the file, line and column.
inline Result<YAML::Node> LoadYaml(const std::string& text, const std::string& source_name) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return Status::InvalidArgument(source_name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                   std::to_string(e.mark.column + 1) +
                                   ": YAML syntax error: " + e.msg);
  }
}

inline std::function<bool(const int&)> Positive() {
  return [](const int& v) { return v > 0; };
}
inline std::function<bool(const int&)> NonNegative() {
  return [](const int& v) { return v >= 0; };
}
inline std::function<bool(const double&)> PositiveNumber() {
  return [](const double& v) { return v > 0; };
}
inline std::function<bool(const double&)> NonNegativeNumber() {
  return [](const double& v) { return v >= 0; };
}
inline std::function<bool(const std::string&)> OneOf(std::set<std::string> allowed) {
  return [allowed](const std::string& v) { return allowed.count(v) > 0; };
}

}  // namespace vigil
