import {
  DerError,
  fromPemAll,
  namedBits,
  oid,
  oidToString,
  readNode,
  readRoot,
  time,
  toPem,
  tlv,
  unsignedInteger,
} from '../../../src/ca/der';

const hex = (b: Buffer): string => b.toString('hex');

describe('DER writer', () => {
  it.each([
    ['1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['2.5.29.17', '0603551d11'],
    ['1.3.6.1.5.5.7.3.1', '06082b06010505070301'],
    ['2.999.3', '0603883703'],
  ])('encodes OID %s and reads it back', (dotted, expected) => {
    expect(hex(oid(dotted))).toBe(expected);
    expect(oidToString(oid(dotted).subarray(2))).toBe(dotted);
  });

  it.each([
    ['strips leading zero bytes', [0, 0, 1], '020101'],
    ['adds a zero byte before a high bit', [0x80], '02020080'],
    ['keeps zero as one byte', [0, 0], '020100'],
    [
      'keeps a 16-byte positive serial at 16 bytes',
      [0x40, ...new Array<number>(15).fill(1)],
      '0210' + '40' + '01'.repeat(15),
    ],
  ])('unsigned INTEGER %s', (_name, bytes, expected) => {
    expect(hex(unsignedInteger(Buffer.from(bytes)))).toBe(expected);
  });

  it.each([
    ['uses UTCTime through 2049', '2049-12-31T23:59:59Z', '170d3439313233313233353935395a'],
    [
      'uses GeneralizedTime from 2050',
      '2050-01-01T00:00:00Z',
      '180f32303530303130313030303030305a',
    ],
    ['drops milliseconds', '2030-06-01T12:00:00.999Z', '170d3330303630313132303030305a'],
  ])('time %s', (_name, iso, expected) => {
    expect(hex(time(new Date(iso)))).toBe(expected);
  });

  it.each([
    ['digitalSignature alone', [0], '03020780'],
    ['digitalSignature and keyEncipherment', [0, 2], '030205a0'],
    ['keyCertSign and cRLSign', [5, 6], '03020106'],
  ])('named bit string %s drops trailing zero bits', (_name, bits, expected) => {
    expect(hex(namedBits(bits))).toBe(expected);
  });

  it.each([
    [0, '0400'],
    [127, '047f'],
    [128, '048180'],
    [255, '0481ff'],
    [256, '04820100'],
    [65535, '0482ffff'],
    [65536, '0483010000'],
  ])('writes a length of %d as %s and reads it back', (n, header) => {
    const encoded = tlv(0x04, Buffer.alloc(n, 1));
    expect(hex(encoded.subarray(0, header.length / 2))).toBe(header);
    expect(encoded.length).toBe(header.length / 2 + n);
    const node = readRoot(encoded);
    expect(node.end - node.contentStart).toBe(n);
  });

  it('concatenates several contents into one TLV', () => {
    expect(hex(tlv(0x30, Buffer.from([1]), Buffer.from([2, 3])))).toBe('3003010203');
  });

  it('uses long-form lengths from 128 bytes on', () => {
    const long = tlv(0x04, Buffer.alloc(300));
    expect(hex(long.subarray(0, 4))).toBe('0482012c');
    expect(readRoot(long).contentStart).toBe(4);
  });
});

describe('DER reader', () => {
  it.each([
    ['an indefinite length', '3080', 'indefinite length is not DER'],
    ['a non-minimal long length', '30810100', 'length is not minimally encoded'],
    ['content past the end', '3005020100', 'content runs past its container'],
    ['a truncated header', '30', 'truncated header'],
  ])('refuses %s', (_name, input, message) => {
    expect(() => readNode(Buffer.from(input, 'hex'), 0)).toThrow(new DerError(message));
  });

  it('refuses trailing bytes after the outer element', () => {
    expect(() => readRoot(Buffer.from('300000', 'hex'))).toThrow('trailing bytes');
  });
});

describe('PEM', () => {
  const der = Buffer.from('3003020101', 'hex');
  it('round-trips DER through PEM, with LF or CRLF line ends', () => {
    const pem = toPem('CERTIFICATE', der);
    expect(fromPemAll(pem, 'CERTIFICATE')).toEqual([der]);
    expect(fromPemAll(pem.replace(/\n/g, '\r\n'), 'CERTIFICATE')).toEqual([der]);
  });

  it('finds every block of its label and only those', () => {
    const text = `x\n${toPem('CERTIFICATE', der)}${toPem('CERTIFICATE REQUEST', Buffer.from('3000', 'hex'))}${toPem('CERTIFICATE', Buffer.from('0500', 'hex'))}`;
    expect(fromPemAll(text, 'CERTIFICATE').map(hex)).toEqual(['3003020101', '0500']);
    expect(fromPemAll(text, 'CERTIFICATE REQUEST').map(hex)).toEqual(['3000']);
  });

  it('skips a block whose body is not base64, and an unterminated block', () => {
    expect(
      fromPemAll('-----BEGIN CERTIFICATE-----\n*!*\n-----END CERTIFICATE-----\n', 'CERTIFICATE'),
    ).toEqual([]);
    expect(fromPemAll('-----BEGIN CERTIFICATE-----\nMAA=\n', 'CERTIFICATE')).toEqual([]);
  });

  it('wraps at 64 columns', () => {
    const lines = toPem('X', Buffer.alloc(100)).split('\n');
    // 100 bytes are 136 base64 characters: 64 + 64 + 8.
    expect(lines.slice(1, 4).map((l) => l.length)).toEqual([64, 64, 8]);
  });
});
