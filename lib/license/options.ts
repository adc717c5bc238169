/**
 * The options file (`floatlmd --options FILE`, docs/options-format.md): the site admin's
 * policy over the vendor's signed counts, in the FlexLM keywords admins know. This module
 * parses it into a `PoolPolicy` and answers the questions the pool asks of a policy (may
 * this requester use this feature, its idle timeout, its queue limit). The pool applies the
 * rest (RESERVE, MAX) and keeps the signed count the ceiling: nothing here adds a seat.
 *
 * Parsing is all-or-nothing: every problem is reported as `file:line:column: reason` and a
 * caller applies the policy only when there are none.
 */

import { Limits } from '../wire/index.ts';
import { type AddrRange, parseAddrRange } from './address.ts';
import { checkName } from './file.ts';
import {
  at,
  type LicenseProblem,
  LineProblem,
  type Logical,
  problem,
  scan,
  type Token,
} from './scan.ts';

/** Who asks for a seat: declared user and host, and the source address ('' = unknown). */
export interface Who {
  user: string;
  host: string;
  /** Canonical source address (lib/license/address.ts), '' when unknown. */
  addr: string;
}

export type SubjectType = 'USER' | 'HOST' | 'GROUP' | 'HOST_GROUP' | 'INTERNET';

/** The `type name` part of a rule. */
export interface Subject {
  type: SubjectType;
  /** The user, host, group name, or the address range as written. */
  name: string;
  match(who: Who): boolean;
}

/** INCLUDE/EXCLUDE (feature = name) or INCLUDEALL/EXCLUDEALL (feature = null). */
export interface AccessRule {
  feature: string | null;
  subject: Subject;
  line: number;
}

/** RESERVE or MAX: `count` seats of `feature` for the subject. */
export interface CountRule {
  feature: string;
  count: number;
  subject: Subject;
  line: number;
}

export interface PoolPolicy {
  file: string;
  groups: ReadonlyMap<string, readonly string[]>;
  hostGroups: ReadonlyMap<string, readonly string[]>;
  include: readonly AccessRule[];
  exclude: readonly AccessRule[];
  /** In file order; applied after the license's own reservations, clipped to the count. */
  reserve: readonly CountRule[];
  max: readonly CountRule[];
  /** Idle timeout by feature name, in seconds. */
  timeout: ReadonlyMap<string, number>;
  /** Idle timeout of every feature without its own TIMEOUT, in seconds; null = none. */
  timeoutAll: number | null;
  /** Queue entries allowed by feature name (the license's QUEUE_MAX still applies). */
  maxQueue: ReadonlyMap<string, number>;
}

export interface ParsedOptions {
  policy: PoolPolicy;
  /** Empty when the file may be applied. */
  problems: LicenseProblem[];
}

/** The policy of no options file: everything permitted, no timeouts, no extra limits. */
export const EMPTY_POLICY: PoolPolicy = Object.freeze({
  file: '',
  groups: new Map(),
  hostGroups: new Map(),
  include: [],
  exclude: [],
  reserve: [],
  max: [],
  timeout: new Map(),
  timeoutAll: null,
  maxQueue: new Map(),
});

/** Most seconds a TIMEOUT or TIMEOUTALL may give: one year. */
export const MAX_TIMEOUT = 31_536_000;

const KEYWORDS = [
  'GROUP',
  'HOST_GROUP',
  'INCLUDE',
  'EXCLUDE',
  'INCLUDEALL',
  'EXCLUDEALL',
  'RESERVE',
  'MAX',
  'TIMEOUT',
  'TIMEOUTALL',
  'MAX_QUEUE',
] as const;
type Keyword = (typeof KEYWORDS)[number];
const SUBJECT_TYPES: readonly SubjectType[] = ['USER', 'HOST', 'GROUP', 'HOST_GROUP', 'INTERNET'];
/** Users, hosts and group names: anything printable without spaces, as on the wire. */
const MEMBER_RE = /^[^\s"\\]+$/;

function word(t: Token): string {
  return t.key === undefined && !t.raw.includes('"') ? t.value.toUpperCase() : '';
}

function missing(l: Logical, what: string, usage: string): LineProblem {
  return new LineProblem(l.lastLine, l.endColumn, `missing ${what}: expected ${usage}`);
}

function plain(t: Token, what: string): LineProblem | undefined {
  if (t.key !== undefined) return at(t, `unexpected "${t.raw}": ${what} is not KEY=VALUE`);
  if (t.raw.startsWith('#')) {
    return at(t, `unexpected "${t.raw}": a comment takes a whole line (# first)`);
  }
  if (t.value === '' || !MEMBER_RE.test(t.value)) {
    return at(t, `bad ${what} "${t.raw}": no spaces, quotes or backslashes`);
  }
  if (t.value.length > Limits.NAME) return at(t, `${what} longer than ${Limits.NAME} characters`);
  return undefined;
}

function featureName(t: Token): string | LineProblem {
  if (t.key === undefined && t.value.includes(':')) {
    return at(t, `feature qualifiers ("${t.raw}") are not supported: give the feature name only`);
  }
  return checkName(t, 'feature name') ?? t.value;
}

function integer(t: Token, what: string, min: number, max: number): number | LineProblem {
  if (t.key !== undefined || !/^[0-9]{1,10}$/.test(t.value)) {
    return at(t, `${what} must be an integer from ${min} to ${max}, not "${t.raw}"`);
  }
  const n = Number(t.value);
  if (n < min || n > max)
    return at(t, `${what} must be an integer from ${min} to ${max}, not ${n}`);
  return n;
}

interface Groups {
  users: Map<string, string[]>;
  hosts: Map<string, string[]>;
  userSets: Map<string, Set<string>>;
  hostSets: Map<string, Set<string>>;
}

function subject(typeT: Token, nameT: Token, groups: Groups): Subject | LineProblem {
  const type = word(typeT) as SubjectType;
  if (!SUBJECT_TYPES.includes(type)) {
    return at(typeT, `bad type "${typeT.raw}": expected USER, HOST, GROUP, HOST_GROUP or INTERNET`);
  }
  const bad = plain(nameT, type === 'INTERNET' ? 'address' : 'name');
  if (bad) return bad;
  const name = nameT.value;
  switch (type) {
    case 'USER':
      return { type, name, match: (w) => w.user === name };
    case 'HOST':
      return { type, name, match: (w) => w.host === name };
    case 'GROUP': {
      const set = groups.userSets.get(name);
      if (!set) return at(nameT, `no GROUP named "${name}" in this file`);
      return { type, name, match: (w) => set.has(w.user) };
    }
    case 'HOST_GROUP': {
      const set = groups.hostSets.get(name);
      if (!set) return at(nameT, `no HOST_GROUP named "${name}" in this file`);
      return { type, name, match: (w) => set.has(w.host) };
    }
    case 'INTERNET': {
      const range: AddrRange | string = parseAddrRange(name);
      if (typeof range === 'string') return at(nameT, range);
      return { type, name, match: (w) => range.has(w.addr) };
    }
  }
}

function expectCount(l: Logical, n: number, usage: string): LineProblem | undefined {
  const args = l.tokens.length - 1;
  if (args < n) {
    const what = usage
      .split(' ')
      .slice(1 + args)
      .join(' ');
    return missing(l, what, usage);
  }
  if (args > n)
    return at(l.tokens[n + 1]!, `unexpected "${l.tokens[n + 1]!.raw}": expected ${usage}`);
  return undefined;
}

const USAGE: Record<Keyword, string> = {
  GROUP: 'GROUP name user ...',
  HOST_GROUP: 'HOST_GROUP name host ...',
  INCLUDE: 'INCLUDE feature type name',
  EXCLUDE: 'EXCLUDE feature type name',
  INCLUDEALL: 'INCLUDEALL type name',
  EXCLUDEALL: 'EXCLUDEALL type name',
  RESERVE: 'RESERVE seats feature type name',
  MAX: 'MAX seats feature type name',
  TIMEOUT: 'TIMEOUT feature seconds',
  TIMEOUTALL: 'TIMEOUTALL seconds',
  MAX_QUEUE: 'MAX_QUEUE feature entries',
};

/**
 * Parses an options file. Never throws on content: every problem is reported and the
 * policy returned holds what did parse (apply it only when `problems` is empty).
 * @throws {TypeError} when text or fileName is not a string
 */
export function parseOptions(text: string, fileName: string): ParsedOptions {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  if (typeof fileName !== 'string') throw new TypeError('fileName must be a string');
  const problems: LicenseProblem[] = [];
  const report = (p: LineProblem) => problems.push(problem(fileName, p));
  const lines: { l: Logical; kw: Keyword }[] = [];
  for (const l of scan(text).logical) {
    if (l.error) {
      report(new LineProblem(l.error.line, l.error.column, l.error.message));
      continue;
    }
    const kwT = l.tokens[0]!;
    const kw = word(kwT) as Keyword;
    if (!KEYWORDS.includes(kw)) {
      report(at(kwT, `unknown keyword "${kwT.raw}": expected ${KEYWORDS.join(', ')}`));
      continue;
    }
    lines.push({ l, kw });
  }
  // Groups first: a rule may name a group defined further down, as in FlexLM.
  const groups: Groups = {
    users: new Map(),
    hosts: new Map(),
    userSets: new Map(),
    hostSets: new Map(),
  };
  for (const { l, kw } of lines) {
    if (kw !== 'GROUP' && kw !== 'HOST_GROUP') continue;
    const [, nameT, ...members] = l.tokens;
    if (!nameT || members.length === 0) {
      report(missing(l, nameT ? 'members' : 'name and members', USAGE[kw]));
      continue;
    }
    const bad =
      plain(nameT, 'group name') ??
      members.map((m) => plain(m, kw === 'GROUP' ? 'user' : 'host')).find((p) => p);
    if (bad) {
      report(bad);
      continue;
    }
    // Lines naming the same group add to it (FlexLM does the same).
    const list = kw === 'GROUP' ? groups.users : groups.hosts;
    const set = kw === 'GROUP' ? groups.userSets : groups.hostSets;
    const names = list.get(nameT.value) ?? [];
    const s = set.get(nameT.value) ?? new Set<string>();
    for (const m of members) {
      if (!s.has(m.value)) names.push(m.value);
      s.add(m.value);
    }
    list.set(nameT.value, names);
    set.set(nameT.value, s);
  }
  const include: AccessRule[] = [];
  const exclude: AccessRule[] = [];
  const reserve: CountRule[] = [];
  const max: CountRule[] = [];
  const timeout = new Map<string, number>();
  const timeoutLine = new Map<string, number>();
  const maxQueue = new Map<string, number>();
  const maxQueueLine = new Map<string, number>();
  let timeoutAll: number | null = null;
  let timeoutAllLine = 0;
  for (const { l, kw } of lines) {
    const tk = l.tokens;
    const line = l.line;
    const p = ((): LineProblem | undefined => {
      switch (kw) {
        case 'GROUP':
        case 'HOST_GROUP':
          return undefined;
        case 'INCLUDE':
        case 'EXCLUDE': {
          const n = expectCount(l, 3, USAGE[kw]);
          if (n) return n;
          const feature = featureName(tk[1]!);
          if (feature instanceof LineProblem) return feature;
          const s = subject(tk[2]!, tk[3]!, groups);
          if (s instanceof LineProblem) return s;
          (kw === 'INCLUDE' ? include : exclude).push({ feature, subject: s, line });
          return undefined;
        }
        case 'INCLUDEALL':
        case 'EXCLUDEALL': {
          const n = expectCount(l, 2, USAGE[kw]);
          if (n) return n;
          const s = subject(tk[1]!, tk[2]!, groups);
          if (s instanceof LineProblem) return s;
          (kw === 'INCLUDEALL' ? include : exclude).push({ feature: null, subject: s, line });
          return undefined;
        }
        case 'RESERVE':
        case 'MAX': {
          const n = expectCount(l, 4, USAGE[kw]);
          if (n) return n;
          const count = integer(tk[1]!, `${kw} seats`, kw === 'MAX' ? 0 : 1, 0xffff);
          if (count instanceof LineProblem) return count;
          const feature = featureName(tk[2]!);
          if (feature instanceof LineProblem) return feature;
          const s = subject(tk[3]!, tk[4]!, groups);
          if (s instanceof LineProblem) return s;
          (kw === 'RESERVE' ? reserve : max).push({ feature, count, subject: s, line });
          return undefined;
        }
        case 'TIMEOUT':
        case 'MAX_QUEUE': {
          const n = expectCount(l, 2, USAGE[kw]);
          if (n) return n;
          const feature = featureName(tk[1]!);
          if (feature instanceof LineProblem) return feature;
          const value =
            kw === 'TIMEOUT'
              ? integer(tk[2]!, 'TIMEOUT seconds', 1, MAX_TIMEOUT)
              : integer(tk[2]!, 'MAX_QUEUE entries', 0, 0xffff);
          if (value instanceof LineProblem) return value;
          const [map, lineOf] =
            kw === 'TIMEOUT' ? [timeout, timeoutLine] : [maxQueue, maxQueueLine];
          const before = lineOf.get(feature);
          if (before !== undefined)
            return at(tk[1]!, `${kw} ${feature} already given on line ${before}`);
          map.set(feature, value);
          lineOf.set(feature, line);
          return undefined;
        }
        case 'TIMEOUTALL': {
          const n = expectCount(l, 1, USAGE[kw]);
          if (n) return n;
          if (timeoutAll !== null)
            return at(tk[0]!, `TIMEOUTALL already given on line ${timeoutAllLine}`);
          const value = integer(tk[1]!, 'TIMEOUTALL seconds', 1, MAX_TIMEOUT);
          if (value instanceof LineProblem) return value;
          timeoutAll = value;
          timeoutAllLine = line;
          return undefined;
        }
      }
    })();
    if (p) report(p);
  }
  problems.sort((a, b) => a.line - b.line || a.column - b.column);
  return {
    policy: {
      file: fileName,
      groups: groups.users,
      hostGroups: groups.hosts,
      include,
      exclude,
      reserve,
      max,
      timeout,
      timeoutAll,
      maxQueue,
    },
    problems,
  };
}

/**
 * Whether `who` may use `feature`: no EXCLUDE or EXCLUDEALL matches, and when any INCLUDE
 * for the feature or any INCLUDEALL exists, one of them matches. EXCLUDE wins over INCLUDE.
 */
export function permitted(policy: PoolPolicy, feature: string, who: Who): boolean {
  let gated = false;
  let included = false;
  for (const r of policy.exclude) {
    if ((r.feature === null || r.feature === feature) && r.subject.match(who)) return false;
  }
  for (const r of policy.include) {
    if (r.feature !== null && r.feature !== feature) continue;
    gated = true;
    if (r.subject.match(who)) {
      included = true;
      break;
    }
  }
  return !gated || included;
}

/** The idle timeout of a feature in ms, or null when its seats never time out. */
export function idleTimeoutMs(policy: PoolPolicy, feature: string): number | null {
  const s = policy.timeout.get(feature) ?? policy.timeoutAll;
  return s === null ? null : s * 1000;
}

/** Whether some feature has an idle timeout. */
export function hasTimeouts(policy: PoolPolicy): boolean {
  return policy.timeoutAll !== null || policy.timeout.size > 0;
}
