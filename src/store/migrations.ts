// Numbered schema migrations; each runs once, in order, inside one transaction.

export const MIGRATIONS: readonly string[] = [
  // 1: qubes, their properties, features, tags; global prefs; volumes; runtime state.
  `
  CREATE TABLE qubes (
    qid INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    klass TEXT NOT NULL
  );
  CREATE TABLE qube_props (
    qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (qid, name)
  );
  CREATE TABLE features (
    qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (qid, name)
  );
  CREATE TABLE tags (
    qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (qid, tag)
  );
  CREATE TABLE global_props (name TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE volumes (
    qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    pool TEXT NOT NULL,
    size INTEGER NOT NULL,
    revisions_to_keep INTEGER NOT NULL,
    PRIMARY KEY (qid, name)
  );
  CREATE TABLE runtime (
    qid INTEGER PRIMARY KEY REFERENCES qubes(qid) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('starting', 'running', 'stopping')),
    runtime_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    root_revision TEXT NOT NULL DEFAULT ''
  );
  CREATE TABLE qube_status (
    qid INTEGER PRIMARY KEY REFERENCES qubes(qid) ON DELETE CASCADE,
    last_error TEXT NOT NULL,
    at INTEGER NOT NULL
  );
  `,
  // 2: every qrexec policy decision (who called what, decided by which rule), for `isola policy log`.
  `
  CREATE TABLE qrexec_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    service TEXT NOT NULL,
    argument TEXT NOT NULL,
    result TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL
  );
  CREATE INDEX qrexec_log_at ON qrexec_log (at);
  `,
  // 3: the host uid range each qube got from the host-wide registry (NULL until first allocated).
  `
  ALTER TABLE qubes ADD COLUMN uid_base INTEGER;
  `,
  // 4: a running qube may be paused (qvm-pause); an hvm qube records the accelerator it runs under.
  `
  ALTER TABLE runtime ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE runtime ADD COLUMN accel TEXT NOT NULL DEFAULT '';
  `,
  // 5: a qube's firewall rules (Qubes' firewall.xml): Admin API lines, each ending in a newline.
  // No row = Qubes' default (one 'action=accept' rule); '' = no rule at all (everything dropped).
  `
  CREATE TABLE firewall (
    qid INTEGER PRIMARY KEY REFERENCES qubes(qid) ON DELETE CASCADE,
    rules TEXT NOT NULL
  );
  `,
];
