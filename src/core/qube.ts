// What a qube is, as data: its class, identity and explicitly set properties, features and tags.
// Pure types shared by the daemon, the store and (as wire shapes) the CLI.

export const QUBE_CLASSES = ['AdminVM', 'TemplateVM', 'AppVM', 'StandaloneVM', 'DispVM'] as const;
export type QubeClass = (typeof QUBE_CLASSES)[number];
/** Classes that `admin.vm.Create.<Class>` accepts in this release. */
export const CREATABLE_CLASSES: readonly QubeClass[] = ['TemplateVM', 'AppVM', 'StandaloneVM'];

export type PropValue = string | number | boolean | null;

export interface QubeRecord {
  qid: number;
  uuid: string;
  name: string;
  klass: QubeClass;
  /** Explicitly set properties only; everything else comes from defaults. */
  props: Record<string, PropValue>;
  features: Record<string, string>;
  tags: string[];
}

/** Qubes' power states. */
export type PowerState = 'Halted' | 'Transient' | 'Running' | 'Paused' | 'Suspended' | 'Halting' | 'Dying' | 'Crashed' | 'NA';

export const DOM0_UUID = '00000000-0000-0000-0000-000000000000';

export function isTemplateBased(klass: QubeClass): boolean {
  return klass === 'AppVM' || klass === 'DispVM';
}
