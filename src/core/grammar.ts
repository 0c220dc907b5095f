// English for messages built from words: `an AppVM`, `a TemplateVM`, `an unknown type`.

/** The word with its indefinite article, chosen by its first letter (a vowel sound takes "an"). */
export function withArticle(word: string): string {
  return `${/^[aeiouAEIOU]/.test(word) ? 'an' : 'a'} ${word}`;
}
