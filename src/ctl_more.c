/*
 * ctl_more.c - quotacachectl commands for quota and cache administration.
 */
#include <stdio.h>

#include "ctl.h"

int ctl_more(struct db *db, const struct config *cfg, int argc, char **argv)
{
	(void)db; (void)cfg; (void)argc; (void)argv;
	return -1;
}

void ctl_usage_more(void)
{
}
