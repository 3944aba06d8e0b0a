#pragma once

#include <napi.h>

namespace nodekvm {

// The `hostIo` object: read/write/pread/pwrite/fdatasync/fallocate/openTap/unix sockets/close.
Napi::Object HostIo(Napi::Env env);

}  // namespace nodekvm
