/* sockit/version.h - library version. */
#ifndef SOCKIT_VERSION_H
#define SOCKIT_VERSION_H

#include "sockit/error.h"

#define SK_VERSION_MAJOR 0
#define SK_VERSION_MINOR 1
#define SK_VERSION_PATCH 0
#define SK_VERSION_STRING "0.1.0"

/* The version of the library actually linked, "0.1.0". */
SK_API const char *sk_version(void);

#endif
