// Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1e3`, `2G`), as the API server
// accepts them for container resources (no sign: resources are never negative).

const QUANTITY = /^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$/;

const MULTIPLIER: Record<string, number> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/**
 * The value of a quantity as a number (precise enough to compare a request with a limit), or
 * undefined when the text is not a quantity.
 */
export function quantityValue(text: string): number | undefined {
  const match = QUANTITY.exec(text);
  if (match === null) return undefined;
  const [, digits = '', suffix = ''] = match;
  const base = Number(digits);
  if (/^[eE][+-]?[0-9]/.test(suffix)) return base * 10 ** Number(suffix.slice(1));
  return base * (MULTIPLIER[suffix] ?? 1);
}

export const isQuantity = (text: string): boolean => QUANTITY.test(text);
