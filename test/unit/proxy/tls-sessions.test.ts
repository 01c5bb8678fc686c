import { keepSession, MAX_TLS_SESSIONS } from '../../../src/agent/proxy/l4/dial';

describe('the TLS tickets kept per client context', () => {
  it('keeps the newest ticket per endpoint, and forgets the least recently kept beyond the cap', () => {
    const map = new Map<string, Buffer>();
    for (let i = 0; i < MAX_TLS_SESSIONS; i++) keepSession(map, `e${i}`, Buffer.from([i % 256]));
    keepSession(map, 'e0', Buffer.from('newer'));
    expect(map.size).toBe(MAX_TLS_SESSIONS);
    keepSession(map, 'one-more', Buffer.from('x'));
    expect(map.size).toBe(MAX_TLS_SESSIONS);
    // e0 was kept again last but one: e1 is now the oldest, and it went.
    expect(map.has('e1')).toBe(false);
    expect(map.get('e0')?.toString()).toBe('newer');
    expect(map.has('one-more')).toBe(true);
  });
});
