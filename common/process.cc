#include "common/process.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/fs.h"

extern char** environ;

namespace vigil {

Result<pid_t> SpawnProcess(const SpawnOptions& o) {
  if (o.argv.empty()) return Status::InvalidArgument("no program to start");
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    if (o.env_drop_prefix.empty() ||
        std::strncmp(*e, o.env_drop_prefix.c_str(), o.env_drop_prefix.size()) != 0) {
      env_strings.emplace_back(*e);
    }
  }
  env_strings.insert(env_strings.end(), o.env_add.begin(), o.env_add.end());
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = o.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();

  int log_fd = -1;
  if (!o.log_file.empty()) {
    log_fd = ::open(o.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) return Status::IoError("open " + o.log_file + ": " + std::strerror(errno));
  }
  // Between fork and execve the child still runs the parent's signal
  // handlers, and Asio's write to a self-pipe the parent shares: a SIGTERM
  // aimed at the new child would be taken by the parent as its own. So all
  // signals stay blocked across fork until the child has reset every
  // handler to its default; one that arrived meanwhile then acts on the
  // child as it should.
  sigset_t all, saved;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &saved);
  pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    if (log_fd >= 0) ::close(log_fd);
    return Status::IoError(std::string("fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
    if (o.new_process_group) ::setpgid(0, 0);
    if (o.parent_death_signal) {
      ::prctl(PR_SET_PDEATHSIG, o.parent_death_signal);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    }
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    }
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (log_fd >= 0) ::close(log_fd);
  if (o.new_process_group)
    ::setpgid(pid, pid);  // also here, so a signal right away finds the group
  return pid;
}

Result<std::string> FindExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    const std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  return Status::NotFound(name + " is not on PATH (" + dirs + ")");
}

bool ProcessOutcome::ok() const { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }

std::string ProcessOutcome::Describe() const {
  if (WIFEXITED(wait_status)) return "exited " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  return "ended with wait status " + std::to_string(wait_status);
}

Result<ProcessOutcome> RunProcess(SpawnOptions options, std::chrono::milliseconds timeout) {
  if (options.argv.empty()) return Status::InvalidArgument("no program to run");
  auto exe = FindExecutable(options.argv[0]);
  if (!exe.ok()) return exe.status();
  options.argv[0] = exe.value();
  // The output goes to a file of its own (a pipe would need reading while waiting).
  std::string capture;
  if (options.log_file.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vigil-run-XXXXXX").string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) return Status::IoError(std::string("mkstemp: ") + std::strerror(errno));
    ::close(fd);
    capture = options.log_file = tmpl;
  }
  auto cleanup = [&] {
    if (!capture.empty()) ::unlink(capture.c_str());
  };
  // Its own process group: a timeout kills what it started too (a site's
  // wrapper script around scontrol, say), not only itself.
  options.new_process_group = true;
  auto pid = SpawnProcess(options);
  if (!pid.ok()) {
    cleanup();
    return pid.status();
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ProcessOutcome out;
  while (true) {
    const pid_t r = ::waitpid(pid.value(), &out.wait_status, WNOHANG);
    if (r == pid.value()) break;
    if (r < 0) {
      const int err = errno;
      cleanup();
      return Status::Internal("waitpid " + options.argv[0] + ": " + std::strerror(err));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid.value(), SIGKILL);
      ::waitpid(pid.value(), nullptr, 0);
      cleanup();
      return Status::Timeout(options.argv[0] + " did not finish within " +
                             std::to_string(timeout.count()) + " ms (killed)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!capture.empty()) {
    auto text = ReadFile(capture);
    if (text.ok()) out.output = text.value();
  }
  cleanup();
  return out;
}

}  // namespace vigil
