# /etc/cron.d/quotacache - the housekeeping of quotacache-housekeeping.timer,
# for systems that do not run systemd (under systemd the timer does it).
*/5 * * * *	quotacache	[ ! -d /run/systemd/system ] && [ -e /etc/quotacache/db_password ] && QC_CONFIG=/etc/quotacache/quotacache.conf /usr/bin/quotacachectl quota expire >/dev/null && QC_CONFIG=/etc/quotacache/quotacache.conf /usr/bin/quotacachectl cache cleanup >/dev/null && QC_CONFIG=/etc/quotacache/quotacache.conf /usr/bin/quotacachectl quota prune-alerts >/dev/null
