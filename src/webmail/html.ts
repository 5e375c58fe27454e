// Every page is built from this one tagged template, which escapes whatever it interpolates: mail is written by
// strangers, so a subject or an address must never become markup. Only a Html value (another template's result,
// or sanitized mail HTML wrapped on purpose with trustedHtml) passes through as it is.

export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

function render(part: Part): string {
  if (part === null || part === undefined || part === false || part === true) return '';
  if (part instanceof Html) return part.value;
  if (Array.isArray(part)) return part.map(render).join('');
  return escapeHtml(String(part));
}

export function html(strings: TemplateStringsArray, ...parts: Part[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < parts.length; i++) out += render(parts[i] as Part) + strings[i + 1]!;
  return new Html(out);
}

/** For markup we produced or sanitized ourselves, never for text from a message or a request. */
export const trustedHtml = (markup: string): Html => new Html(markup);
