/**
 * The line scanner shared by license files and options files: comments, blank lines,
 * backslash continuations, quoted values, KEY=VALUE tokens, and the `file:line:column:
 * reason` problems both report.
 */

const KEY_RE = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s;

export interface LicenseProblem {
  file: string;
  line: number;
  /** 1-based column of the offending token (characters, tabs count as one). */
  column: number;
  message: string;
  /** `file:line:column: message`. */
  text: string;
}

/** One whitespace-separated token of a logical line. */
export interface Token {
  /** Raw characters as written. */
  raw: string;
  /** Option key, uppercased, when the token is KEY=VALUE. */
  key?: string;
  /** Unquoted value (the whole token when it is not KEY=VALUE). */
  value: string;
  line: number;
  column: number;
  /** Index just past the token in its physical line. */
  end: number;
}

/** One logical line: physical lines joined by trailing backslashes. */
export interface Logical {
  tokens: Token[];
  /** Physical line of the first token. */
  line: number;
  /** Physical line of the last token, and the column just past it (where a missing field goes). */
  lastLine: number;
  endColumn: number;
  /** A tokenizing problem; the line is not interpreted. */
  error?: { line: number; column: number; message: string };
}

function unquote(s: string): string | undefined {
  if (s.length < 2 || s[0] !== '"' || s[s.length - 1] !== '"') return undefined;
  let out = '';
  for (let i = 1; i < s.length - 1; i++) {
    const c = s[i]!;
    if (c === '\\') {
      i++;
      if (i >= s.length - 1) return undefined;
      out += s[i];
    } else if (c === '"') return undefined;
    else out += c;
  }
  return out;
}

function makeToken(raw: string, line: number, start: number, end: number): Token | string {
  const m = KEY_RE.exec(raw);
  let key: string | undefined;
  let value = raw;
  if (m) {
    key = m[1]!.toUpperCase();
    value = m[2]!;
  }
  if (value.includes('"')) {
    const u = unquote(value);
    if (u === undefined) return 'misplaced quote: quote a whole value, as in KEY="some text"';
    value = u;
  }
  return { raw, ...(key !== undefined ? { key } : {}), value, line, column: start + 1, end };
}

/**
 * Splits text into logical lines (continuations joined, comments and blanks dropped).
 * Never throws on content: a tokenizing problem is kept in the line's `error`.
 */
export function scan(text: string): { physical: string[]; logical: Logical[] } {
  const physical = text.split(/\r?\n/);
  const logical: Logical[] = [];
  let cur: Logical | undefined;
  for (let i = 0; i < physical.length; i++) {
    const lineNo = i + 1;
    let s = physical[i]!;
    const trimmed = s.trim();
    if (trimmed.startsWith('#')) continue;
    if (trimmed === '') {
      if (cur) logical.push(cur);
      cur = undefined;
      continue;
    }
    const trimmedEnd = s.trimEnd();
    const continues = trimmedEnd.endsWith('\\');
    if (continues) s = trimmedEnd.slice(0, -1);
    if (!cur) cur = { tokens: [], line: lineNo, lastLine: lineNo, endColumn: 1 };
    let j = 0;
    while (j < s.length) {
      const c = s[j]!;
      if (c === ' ' || c === '\t') {
        j++;
        continue;
      }
      const start = j;
      let inQuote = false;
      let quoteAt = 0;
      while (j < s.length) {
        const d = s[j]!;
        if (inQuote) {
          if (d === '\\') j++;
          else if (d === '"') inQuote = false;
        } else if (d === '"') {
          inQuote = true;
          quoteAt = j;
        } else if (d === ' ' || d === '\t') break;
        j++;
      }
      if (inQuote) {
        cur.error ??= { line: lineNo, column: quoteAt + 1, message: 'unterminated quoted string' };
        break;
      }
      const t = makeToken(s.slice(start, j), lineNo, start, j);
      if (typeof t === 'string') cur.error ??= { line: lineNo, column: start + 1, message: t };
      else {
        cur.tokens.push(t);
        cur.lastLine = lineNo;
        cur.endColumn = j + 1;
      }
    }
    if (!continues) {
      logical.push(cur);
      cur = undefined;
    }
  }
  if (cur) logical.push(cur);
  return { physical, logical: logical.filter((l) => l.tokens.length > 0 || l.error) };
}

// ------------------------------------------------------------------ interpreting

/** A problem at a line and column, before the file name is known. */
export class LineProblem {
  constructor(
    readonly line: number,
    readonly column: number,
    readonly message: string,
  ) {}
}

/** A problem at a token. */
export const at = (t: Token, message: string) => new LineProblem(t.line, t.column, message);

/** The `file:line:column: message` form of a problem. */
export function problem(file: string, p: LineProblem): LicenseProblem {
  return {
    file,
    line: p.line,
    column: p.column,
    message: p.message,
    text: `${file}:${p.line}:${p.column}: ${p.message}`,
  };
}
