// Qubes' eight labels (trust colours), with Qubes' indices and colours.

export interface Label {
  index: number;
  name: LabelName;
  color: string;
}

export const LABEL_NAMES = ['red', 'orange', 'yellow', 'green', 'gray', 'blue', 'purple', 'black'] as const;
export type LabelName = (typeof LABEL_NAMES)[number];

const COLORS: Record<LabelName, string> = {
  red: '0xcc0000',
  orange: '0xf57900',
  yellow: '0xedd400',
  green: '0x73d216',
  gray: '0x555555',
  blue: '0x3465a4',
  purple: '0x75507b',
  black: '0x000000',
};

export const LABELS: readonly Label[] = LABEL_NAMES.map((name, i) => ({ index: i + 1, name, color: COLORS[name] }));

/** Accepts a name, an index or `label-N`, as Qubes' label setter does. */
export function findLabel(untrusted: string): Label | undefined {
  const byName = LABELS.find((l) => l.name === untrusted);
  if (byName) return byName;
  const m = /^(?:label-)?([1-9][0-9]*)$/.exec(untrusted);
  if (m) return LABELS.find((l) => l.index === Number(m[1]));
  return undefined;
}
