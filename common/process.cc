#include "common/process.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstring>

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

}  // namespace vigil
