using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Hoard.Core.Git;

/// <summary>
/// upload-pack's stdout as a stream that is only "complete" if git exited 0: a failed pack must never be
/// committed to the pack cache, so a non-zero exit surfaces as an IOException at the end of the stream.
/// The process slot is released when the stream ends or is disposed.
/// </summary>
internal sealed class ProcessOutputStream(Process process, Action release) : ReadOnlyStream
{
    private readonly Stream _stdout = process.StandardOutput.BaseStream;
    private int _released;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = await _stdout.ReadAsync(buffer, cancellationToken);
        if (n == 0)
        {
            await process.WaitForExitAsync(cancellationToken);
            Release();
            if (process.ExitCode != 0)
            {
                throw new IOException($"git upload-pack exited {process.ExitCode}");
            }
        }
        return n;
    }


    private void Release()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            release();
        }
    }

    private int _disposed;

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
            process.Dispose();
            Release();
        }
        base.Dispose(disposing);
    }

}

/// <summary>
/// Drops sideband-2 (progress) pkt-lines from an upload-pack response so a cached pack carries nothing of the
/// session that produced it. Everything else passes byte for byte. Only for side-band responses (v2, or v0/v1 with
/// side-band-64k), where every byte after the request is a pkt-line.
/// </summary>
internal sealed class ProgressFilterStream(Stream inner) : ReadOnlyStream
{
    private readonly byte[] _header = new byte[4];
    private byte[] _packet = new byte[65520];
    private int _packetLength;
    private int _packetOffset;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_packetOffset >= _packetLength)
        {
            if (!await FillExactAsync(_header, 4, cancellationToken))
            {
                return 0;
            }
            var length = int.Parse(Encoding.ASCII.GetString(_header), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (length < 4)
            {
                _header.CopyTo(_packet, 0);
                (_packetLength, _packetOffset) = (4, 0);
                break;
            }
            if (length > _packet.Length)
            {
                _packet = new byte[length];
            }
            _header.CopyTo(_packet, 0);
            if (!await FillExactAsync(_packet.AsMemory(4, length - 4), length - 4, cancellationToken))
            {
                throw new IOException("upload-pack output ended inside a pkt-line");
            }
            if (length > 4 && _packet[4] == 2)
            {
                continue; // progress
            }
            (_packetLength, _packetOffset) = (length, 0);
        }
        var n = Math.Min(buffer.Length, _packetLength - _packetOffset);
        _packet.AsMemory(_packetOffset, n).CopyTo(buffer);
        _packetOffset += n;
        return n;
    }

    private async Task<bool> FillExactAsync(Memory<byte> target, int count, CancellationToken ct)
    {
        var read = 0;
        while (read < count)
        {
            var n = await inner.ReadAsync(target[read..count], ct);
            if (n == 0)
            {
                if (read == 0)
                {
                    return false;
                }
                throw new IOException("upload-pack output ended inside a pkt-line");
            }
            read += n;
        }
        return true;
    }


    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }


}

/// <summary>A forward-only readable stream: subclasses implement ReadAsync; everything else is fixed.</summary>
internal abstract class ReadOnlyStream : Stream
{
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
