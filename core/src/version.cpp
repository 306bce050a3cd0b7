#include "iocm/version.h"

extern "C" const char* iocm_version(void) noexcept { return IOCM_VERSION_STRING; }
