/* sockit/sockit.h - everything libsockit offers, in one include. */
#ifndef SOCKIT_SOCKIT_H
#define SOCKIT_SOCKIT_H

#include "sockit/addr.h"
#include "sockit/bridge.h"
#include "sockit/buf.h"
#include "sockit/error.h"
#include "sockit/loop.h"
#include "sockit/net.h"
#include "sockit/server.h"
#include "sockit/tserver.h"
#include "sockit/version.h"

#endif
