// The Admin API socket under hostile input: malformed and oversized requests, wrong contracts,
// callers pretending to be qubes. Each gets one error reply; isolad keeps serving; nothing changes.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

/** Sends raw bytes (half-closing after them) and returns the raw reply. */
function raw(socket: string, bytes: Buffer, halfClose = true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socket);
    const chunks: Buffer[] = [];
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.write(bytes);
    if (halfClose) s.end();
    setTimeout(() => s.destroy(), 5000);
  });
}

function exceptionCode(reply: Buffer): string {
  assert.equal(reply[0], 0x32, `expected an exception reply, got ${JSON.stringify(reply.toString())}`);
  return reply.subarray(2).toString().split('\0')[0];
}

describe('Admin API socket', { skip, concurrency: false }, () => {
  let inst: Instance;
  let sock: string;
  before(async () => {
    inst = new Instance();
    await inst.start();
    sock = inst.env.ISOLA_SOCKET!;
  });
  after(async () => inst?.destroy());

  const BAD: [string, Buffer, string][] = [
    ['garbage without a NUL', Buffer.from('hello there'), 'ProtocolError'],
    ['a header of 2000 bytes', Buffer.concat([Buffer.alloc(2000, 0x61), Buffer.from([0])]), 'ProtocolError'],
    ['an unknown method', Buffer.from('admin.vm.Explode dom0 name dom0\0'), 'ProtocolError'],
    ['an argument to a method that takes none', Buffer.from('admin.vm.List+x dom0 name dom0\0'), 'ProtocolError'],
    ['a method that must target dom0 sent to a qube', Buffer.from('admin.property.List dom0 name work\0'), 'ProtocolError'],
    ['admin.vm.Start on dom0', Buffer.from('admin.vm.Start dom0 name dom0\0'), 'ProtocolError'],
    ['a required argument missing', Buffer.from('admin.vm.property.Get dom0 name dom0\0'), 'ProtocolError'],
    ['a forbidden payload', Buffer.from('admin.vm.List dom0 name dom0\0payload'), 'ProtocolError'],
    ['a caller claiming to be a qube', Buffer.from('admin.vm.List work name dom0\0'), 'PermissionDenied'],
    ['a create with a malformed payload', Buffer.from('admin.vm.Create.AppVM dom0 name dom0\0name=x label'), 'ProtocolError'],
    ['a create with a key given twice', Buffer.from('admin.vm.Create.AppVM dom0 name dom0\0name=x name=y label=red'), 'ProtocolError'],
    ['a property value that is not UTF-8', Buffer.concat([Buffer.from('admin.property.Set+default_kernel dom0 name dom0\0'), Buffer.from([0xff, 0xfe])]), 'ProtocolError'],
    ['a clipboard copy from dom0', Buffer.from('admin.clipboard.CopyFrom dom0 name dom0\0'), 'ProtocolError'],
    ['a clipboard paste with a payload', Buffer.from('admin.clipboard.PasteTo dom0 name work\0text'), 'ProtocolError'],
    ['a clipboard paste into a qube that does not exist', Buffer.from('admin.clipboard.PasteTo dom0 name nosuch\0'), 'QubesVMNotFoundError'],
    ['admin.vm.Run with a frame that is not an exec request', Buffer.concat([Buffer.from('admin.vm.Run+autostart dom0 name dom0\0'), Buffer.from([0x90, 1, 0, 0, 0, 0, 0, 0])]), 'ProtocolError'],
  ];
  for (const [what, bytes, code] of BAD) {
    test(`refuses ${what} with ${code} and changes nothing`, async () => {
      const before = await inst.stateDump();
      assert.equal(exceptionCode(await raw(sock, bytes)), code);
      assert.equal(await inst.stateDump(), before);
    });
  }

  test('a client that connects and says nothing does not block others', async () => {
    const idle = net.createConnection(sock);
    await new Promise((r) => idle.once('connect', r));
    assert.match(await inst.ok('qvm-ls', '--raw-list'), /dom0/);
    idle.destroy();
  });

  test('isolad still serves after all of the above, and a fresh isolad holds nothing but dom0', async () => {
    assert.equal(await inst.ok('qvm-ls', '--raw-list'), 'dom0\n');
  });
});
