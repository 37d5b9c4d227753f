// `vigil resume`, `vigil chaos` and `vigil playbook check`: the on-call
// engineer's levers on a running job, and the check for a playbook before it
// is trusted with one. The first two reach vigild over its RPC port as a
// CONTROL client, with the job's token from the work directory.
#include <pwd.h>
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "common/framed_socket.h"
#include "common/fs.h"
#include "common/util.h"
#include "common/vigild_addr.h"
#include "coordinator/playbook.h"

namespace vigil::cli {

std::string CurrentUser() {
  if (const char* u = std::getenv("USER"); u && *u) return u;
  if (const passwd* pw = ::getpwuid(::getuid())) return pw->pw_name;
  return "uid-" + std::to_string(::getuid());
}

namespace {

// Sends one control request to the vigild of `workdir`; prints its answer.
int SendControl(const std::string& workdir, wire::ControlRequest req, const char* verb) {
  auto addr = ReadVigildAddr(workdir);
  if (addr.status().code() == StatusCode::kNotFound) {
    std::fprintf(stderr, "vigil %s: no vigild is running for %s (no vigild.addr)\n", verb,
                 workdir.c_str());
    return 2;
  }
  auto token = ReadTokenFile(workdir + "/token");
  if (!addr.ok() || !token.ok()) {
    std::fprintf(stderr, "vigil %s: %s/vigild.addr or %s/token is unreadable\n", verb,
                 workdir.c_str(), workdir.c_str());
    return 2;
  }
  wire::Hello hello;
  hello.set_protocol_version(kProtocolVersion);
  hello.set_role(wire::Hello::CONTROL);
  hello.set_host("vigil-cli");
  hello.set_pid(static_cast<uint32_t>(::getpid()));
  auto sock =
      FramedSocket::ConnectAndHello(addr->rpc, hello, token.value(), std::chrono::seconds(5));
  if (!sock.ok()) {
    std::fprintf(stderr, "vigil %s: cannot reach vigild: %s\n", verb,
                 sock.status().ToString().c_str());
    return 1;
  }
  if (req.actor().empty()) req.set_actor(CurrentUser());
  wire::Envelope env;
  *env.mutable_control_request() = req;
  if (Status st = sock->Send(env); !st.ok()) {
    std::fprintf(stderr, "vigil %s: %s\n", verb, st.ToString().c_str());
    return 1;
  }
  auto reply = sock->Receive(std::chrono::seconds(10));
  if (!reply.ok() || !reply->has_control_response()) {
    std::fprintf(stderr, "vigil %s: no answer from vigild\n", verb);
    return 1;
  }
  const auto& r = reply->control_response();
  std::fprintf(r.ok() ? stdout : stderr, "vigil %s: %s\n", verb, r.message().c_str());
  return r.ok() ? 0 : 1;
}

}  // namespace

int Resume(const ControlArgs& args) {
  wire::ControlRequest req;
  req.set_command(wire::ControlRequest::RESUME);
  req.set_actor(args.actor);
  req.set_note(args.note);
  return SendControl(args.workdir, req, "resume");
}

int Chaos(const ControlArgs& args) {
  wire::ControlRequest req;
  req.set_command(wire::ControlRequest::CHAOS);
  req.set_actor(args.actor);
  req.set_chaos(args.fault);
  return SendControl(args.workdir, req, "chaos");
}

int PlaybookCheck(const std::string& path) {
  auto pb = coordinator::LoadPlaybook(path);
  if (!pb.ok()) {
    std::fprintf(stderr, "%s\n", pb.status().message().c_str());
    return 1;
  }
  std::printf("%s: ok, %zu rules\n", path.c_str(), pb->rules.size());
  for (const auto& r : pb->rules) {
    std::string kinds, actions;
    for (const auto& k : r.kinds) kinds += (kinds.empty() ? "" : ",") + k;
    if (kinds.empty()) kinds = "any";
    std::string codes;
    for (int64_t c : r.codes) codes += (codes.empty() ? "" : ",") + std::to_string(c);
    if (!codes.empty()) kinds += " codes " + codes;
    for (const auto& a : r.actions) actions += (actions.empty() ? "" : " ") + a.ToString();
    std::printf("  %-28s %s%s -> %s\n", r.name.c_str(), kinds.c_str(),
                r.count > 1 ? (" x" + std::to_string(r.count) + " per " + r.per).c_str() : "",
                actions.c_str());
  }
  return 0;
}

}  // namespace vigil::cli
