// The address a daemon tells others to reach it at. A wildcard (0.0.0.0,
// ::) is where to listen, never where to connect: a rank handed
// 0.0.0.0:PORT as its store address reaches nothing on another host.
#pragma once

#include <string>

#include "common/status.h"

namespace vigil {

// True for 0.0.0.0, :: and the empty string.
bool IsWildcardAddress(const std::string& host);

// What vigild advertises, listening on `listen_host`: `advertise` when
// given (a wildcard is an error); else `listen_host` when it is a real
// address; else the first IPv4 address of an interface that is up and not
// loopback (127.0.0.1 when there is none: this machine alone).
Result<std::string> AdvertisedAddress(const std::string& listen_host, const std::string& advertise);

}  // namespace vigil
