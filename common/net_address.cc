#include "common/net_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

namespace vigil {

bool IsWildcardAddress(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
}

Result<std::string> AdvertisedAddress(const std::string& listen_host,
                                      const std::string& advertise) {
  if (!advertise.empty()) {
    if (IsWildcardAddress(advertise)) {
      return Status::InvalidArgument("--advertise " + advertise +
                                     " is a wildcard: give an address agents and ranks can reach");
    }
    return advertise;
  }
  if (!IsWildcardAddress(listen_host)) return listen_host;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::string("127.0.0.1");
  std::string found;
  for (ifaddrs* i = list; i && found.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    if (!(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
    char text[INET_ADDRSTRLEN] = {};
    const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text))) found = text;
  }
  ::freeifaddrs(list);
  return found.empty() ? std::string("127.0.0.1") : found;
}

}  // namespace vigil
