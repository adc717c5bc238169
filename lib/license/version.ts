/**
 * Feature versions: dotted decimal numbers ("1", "2.5", "2.10"), compared component by
 * component as integers, so "2.10" > "2.9" and "1" == "1.0" (missing components are 0).
 */
import { Limits } from '../wire/index.ts';

const VERSION_RE = /^[0-9]{1,9}(\.[0-9]{1,9})*$/;

/**
 * Why `text` is not a valid version, or undefined when it is. At most 32 bytes, digits
 * and dots, each component 1 to 9 digits, no empty components.
 * @throws {TypeError} when text is not a string
 */
export function versionProblem(text: string): string | undefined {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  if (text.length === 0) return 'version is empty';
  if (text.length > Limits.VERSION_STR)
    return `version longer than ${Limits.VERSION_STR} characters`;
  if (!VERSION_RE.test(text)) {
    return `bad version "${text}": expected dotted numbers such as 1.0 or 2.10 (at most 9 digits each)`;
  }
  return undefined;
}

/** True when `text` is a valid version (see versionProblem). */
export function isVersion(text: unknown): text is string {
  return typeof text === 'string' && versionProblem(text) === undefined;
}

/**
 * Compares two versions: negative when a < b, 0 when equal, positive when a > b.
 * @throws {RangeError} naming the parameter when one is not a valid version
 */
export function compareVersion(a: string, b: string): number {
  if (!isVersion(a)) throw new RangeError(`a: not a version: ${JSON.stringify(a)}`);
  if (!isVersion(b)) throw new RangeError(`b: not a version: ${JSON.stringify(b)}`);
  const pa = a.split('.');
  const pb = b.split('.');
  const n = Math.max(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const x = Number(pa[i] ?? '0');
    const y = Number(pb[i] ?? '0');
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * A key equal for versions that compare equal ("1", "1.0" and "01.00" all give "1"), for
 * grouping feature lines by version.
 * @throws {RangeError} when version is not a valid version
 */
export function versionKey(version: string): string {
  if (!isVersion(version))
    throw new RangeError(`version: not a version: ${JSON.stringify(version)}`);
  const parts = version.split('.').map((p) => String(Number(p)));
  while (parts.length > 1 && parts[parts.length - 1] === '0') parts.pop();
  return parts.join('.');
}
