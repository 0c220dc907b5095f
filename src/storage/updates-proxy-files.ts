// The update qube's half of Qubes' updates proxy, as files of the template (Qubes ships them in
// core-agent-linux's networking package): tinyproxy's configuration and the filter of hosts it refuses.
// They live in the template's /etc, so a user may edit them there, as in Qubes.

/** Qubes' tinyproxy-updates.conf, minus what needs systemd (PidFile in its RuntimeDirectory). */
export const TINYPROXY_UPDATES_CONF = `# Qubes' updates proxy (qubes.UpdatesProxy): started by isola-agent in netvms. Templates reach it
# only through qrexec, never by address.
User tinyproxy
Group tinyproxy
Port 8082
Listen 127.0.0.1
Timeout 60
DefaultErrorFile "/usr/share/tinyproxy/default.html"
StatFile "/usr/share/tinyproxy/stats.html"
Syslog Off
LogLevel Notice
MaxClients 50
Allow 127.0.0.1
Allow 10.137.0.0/16
DisableViaHeader Yes
Filter "/etc/tinyproxy/updates-blacklist"
FilterURLs Off
FilterExtended On
FilterCaseSensitive Off
FilterDefaultDeny No
ConnectPort 443
ConnectPort 873
`;

/**
 * Hosts (as the client wrote them) the proxy refuses: Qubes' two (the old proxy address 10.137.255.254
 * and the update qube's own loopback), then the rest of loopback, the qubes' own ranges (10.137 AppVMs,
 * 10.138 disposables, 10.139 virtual DNS), and the spellings getaddrinfo also reads as those addresses
 * (one to three numeric parts, octal and hex parts, every IPv6 literal such as [::1] or [::ffff:127.0.0.1]).
 * A name that resolves to such an address is not caught here (as in Qubes): docs/network.md says so.
 */
export const UPDATES_BLACKLIST = [
  '^10\\.137\\.255\\.254\\.?$',
  '^127\\.0\\.0\\.1\\.?$',
  '^127\\.',
  '^localhost\\.?$',
  '\\.localhost\\.?$',
  '^10\\.13[789]\\.',
  '^0',
  '^([0-9]+\\.){0,2}[0-9]+\\.?$',
  '(^|\\.)0[0-9x]',
  ':', // an IPv6 literal ([::1], [::ffff:127.0.0.1]; tinyproxy drops the brackets): no host name has one
  '',
].join('\n');
