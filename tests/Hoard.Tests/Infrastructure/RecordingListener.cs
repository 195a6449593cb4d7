using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A bare TCP listener on a loopback port that counts the connections it gets and answers each with fixed bytes,
/// then closes: the internal service an SSRF would reach (and the proof whether anything reached it), or an upstream
/// that lies in ways Kestrel would not let a test app lie.
/// </summary>
public sealed class RecordingListener : IDisposable
{
    public const string Body = "internal service";
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly byte[] _response;
    private int _connections;

    /// <param name="rawResponse">What every connection gets, status line to body; by default a 200 with <see cref="Body"/>.</param>
    public RecordingListener(string? rawResponse = null)
    {
        _response = Encoding.ASCII.GetBytes(rawResponse ?? $"HTTP/1.1 200 OK\r\nContent-Length: {Body.Length}\r\nConnection: close\r\n\r\n{Body}");
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = Task.Run(AcceptLoopAsync);
    }

    public int Port { get; }
    public int Connections => Volatile.Read(ref _connections);

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                Interlocked.Increment(ref _connections);
                _ = Task.Run(() => AnswerAsync(client, _response));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private static async Task AnswerAsync(TcpClient client, byte[] response)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var request = new StringBuilder();
                var buffer = new byte[4096];
                while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var n = await stream.ReadAsync(buffer);
                    if (n == 0)
                    {
                        return;
                    }
                    request.Append(Encoding.ASCII.GetString(buffer, 0, n));
                }
                await stream.WriteAsync(response);
                client.Client.Shutdown(SocketShutdown.Send);
            }
            catch (IOException)
            {
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }
}
