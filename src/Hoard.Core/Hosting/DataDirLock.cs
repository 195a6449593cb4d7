using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Hoard.Core.Hosting;

/// <summary>
/// One Hoard per data dir: an exclusive flock(2) on DATA/hoard.lock, taken before anything else touches the
/// directory (a second process would delete the first one's temp files and write to its index), holding the
/// holder's PID for the message a second process prints. The kernel releases the lock when the process ends,
/// however it ends, so there is never a stale lock to clean up.
///
/// Not FileStream with FileShare.None, although on Linux that is the same flock(LOCK_EX|LOCK_NB): setting
/// DOTNET_SYSTEM_IO_DISABLEFILELOCKING turns it off silently, and .NET takes a shared flock on every other open
/// of the file, so the second process could not even read the PID.
/// </summary>
public sealed partial class DataDirLock : IDisposable
{
    public const string FileName = "hoard.lock";

    private readonly SafeFileHandle _handle;

    private DataDirLock(SafeFileHandle handle) => _handle = handle;

    /// <summary>Takes the lock and writes this process's PID into it, or throws <see cref="DataDirInUseException"/>.</summary>
    public static DataDirLock Acquire(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        if (!OperatingSystem.IsLinux())
        {
            return AcquirePortable(dataDir, path);
        }
        // O_CLOEXEC: git processes Hoard starts must not inherit the descriptor, or a git outliving Hoard
        // would keep the lock.
        var fd = Open(path, ORdWr | OCreat | OCloExec, 0b110_100_100); // mode 0644
        if (fd < 0)
        {
            throw new IOException($"cannot open {path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (Flock(fd, LockEx | LockNb) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            try
            {
                if (errno == EWouldBlock)
                {
                    throw new DataDirInUseException(dataDir, ReadPid(handle));
                }
                throw new IOException($"cannot lock {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
            finally
            {
                handle.Dispose();
            }
        }
        RandomAccess.SetLength(handle, 0);
        RandomAccess.Write(handle, Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n"), 0);
        return new DataDirLock(handle);
    }

    private static DataDirLock AcquirePortable(string dataDir, string path)
    {
        try
        {
            var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            RandomAccess.SetLength(handle, 0);
            RandomAccess.Write(handle, Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n"), 0);
            return new DataDirLock(handle);
        }
        catch (IOException) when (File.Exists(path))
        {
            throw new DataDirInUseException(dataDir, null);
        }
    }

    private static int? ReadPid(SafeFileHandle handle)
    {
        var buffer = new byte[32];
        var n = RandomAccess.Read(handle, buffer, 0);
        return int.TryParse(Encoding.ASCII.GetString(buffer, 0, n).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
    }

    /// <summary>Releases the lock (closing the descriptor does). The PID stays in the file: it only means something while locked.</summary>
    public void Dispose() => _handle.Dispose();

    // Linux values (the same on x86-64 and arm64).
    private const int ORdWr = 0x2;
    private const int OCreat = 0x40;
    private const int OCloExec = 0x80000;
    private const int LockEx = 2;
    private const int LockNb = 4;
    private const int EWouldBlock = 11;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(int fd, int operation);
}

/// <summary>Another process holds the data dir's lock.</summary>
public sealed class DataDirInUseException(string dataDir, int? pid)
    : Exception($"the data dir '{Path.GetFullPath(dataDir)}' is in use by another Hoard ({(pid is { } p ? $"PID {p}" : "PID unknown")}, holding {Path.Combine(Path.GetFullPath(dataDir), DataDirLock.FileName)}); one process per data dir: stop it or give this one another --data")
{
    public int? HolderPid { get; } = pid;
}
