// SPDX-License-Identifier: GPL-2.0
#include "mx_maglev.c"
