#include "worker/agent/stack_dump.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/process.h"
#include "common/util.h"

namespace vigil::agent {

namespace {

std::string ReadSmall(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string FindGdb() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    const std::string p = std::string(dir) + "/gdb";
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

}  // namespace

ProcessState ReadProcessState(pid_t pid) {
  ProcessState s;
  const std::string base = "/proc/" + std::to_string(pid);
  const std::string stat = ReadSmall(base + "/stat");
  // pid (comm) state ... : comm may hold spaces and parentheses, so parse after the last ')'.
  const auto rp = stat.rfind(')');
  if (rp == std::string::npos) return s;
  std::istringstream in(stat.substr(rp + 2));
  std::string field;
  in >> s.state;
  // Fields after state: ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
  // stime.
  uint64_t utime = 0, stime = 0;
  for (int i = 0; i < 10 && in >> field; ++i) {
  }
  in >> utime >> stime;
  s.cpu_ticks = utime + stime;
  s.wchan = ReadSmall(base + "/wchan");
  return s;
}

void DumpStacks(pid_t pid, const std::string& path, std::chrono::milliseconds gdb_timeout) {
  const ProcessState st = ReadProcessState(pid);
  {
    std::ofstream out(path, std::ios::trunc);
    out << "# vigil-agent stack dump of pid " << pid << " at " << NowMicros() << " us\n"
        << "# process state " << (st.state.empty() ? "gone" : st.state) << ", wchan " << st.wchan
        << ", cpu ticks " << st.cpu_ticks << "\n";
    std::error_code ec;
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
      const std::string dir = t.path().string();
      const ProcessState ts = ReadProcessState(static_cast<pid_t>(std::stoi(t.path().filename())));
      out << "\n## thread " << t.path().filename().string() << " ("
          << ReadSmall(dir + "/comm").substr(0, ReadSmall(dir + "/comm").find('\n')) << ") state "
          << ts.state << " wchan " << ts.wchan << "\n";
      const std::string kstack = ReadSmall(dir + "/stack");
      out << (kstack.empty() ? "(kernel stack not readable)\n" : kstack);
    }
  }
  const std::string gdb = FindGdb();
  if (gdb.empty() || st.state.empty() || st.state == "T" || st.state == "t") {
    std::ofstream(path, std::ios::app)
        << "\n# no gdb backtrace: "
        << (gdb.empty() ? "gdb is not installed" : "the process is stopped (or gone)") << "\n";
    return;
  }
  std::ofstream(path, std::ios::app) << "\n# gdb backtrace\n";
  SpawnOptions o;
  o.argv = {gdb, "-nx", "-batch", "-p", std::to_string(pid), "-ex", "thread apply all bt"};
  o.log_file = path;
  auto child = SpawnProcess(o);
  if (!child.ok()) return;
  const auto deadline = std::chrono::steady_clock::now() + gdb_timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(child.value(), &status, WNOHANG);
    // The agent's SIGCHLD reaper may collect it first (ECHILD): it is done either way.
    if (r != 0) return;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(child.value(), SIGKILL);
      std::ofstream(path, std::ios::app) << "\n# gdb timed out\n";
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace vigil::agent
