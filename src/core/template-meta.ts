// Qubes' template package metadata (qvm-template's Template tuple), as isolad describes a template
// it can install and as qvm-template shows it: one shape for both sides of admin.template.List.

export interface TemplateMeta {
  name: string;
  epoch: string;
  version: string;
  release: string;
  reponame: string;
  size: number;
  /** UTC build time, `YYYY-MM-DD HH:MM:SS`; '' when not built yet. */
  buildtime: string;
  license: string;
  url: string;
  summary: string;
  description: string;
}
