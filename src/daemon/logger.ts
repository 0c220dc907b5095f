// isolad's log: one line per event on stderr (journald adds timestamps under systemd).

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function stderrLogger(quiet = false): Logger {
  const line = (level: string, msg: string) => process.stderr.write(`${new Date().toISOString()} isolad ${level}: ${msg}\n`);
  return {
    info: (m) => { if (!quiet) line('info', m); },
    warn: (m) => line('warning', m),
    error: (m) => line('error', m),
  };
}
