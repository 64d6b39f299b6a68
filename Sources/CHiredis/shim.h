#ifndef FLEET_CHIREDIS_SHIM_H
#define FLEET_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
