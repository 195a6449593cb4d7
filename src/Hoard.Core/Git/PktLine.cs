using System.Globalization;
using System.Text;

namespace Hoard.Core.Git;

/// <summary>
/// git's pkt-line framing: four hex digits of length (including themselves), then the payload; 0000 is a flush,
/// 0001 a delimiter, 0002 a response end. The one reader and writer for request bodies and answers Hoard makes.
/// </summary>
public static class PktLine
{
    /// <summary>A text line as a pkt-line, newline-terminated as git writes them.</summary>
    public static string Format(string line) => (Encoding.UTF8.GetByteCount(line) + 5).ToString("x4", CultureInfo.InvariantCulture) + line + "\n";

    /// <summary>
    /// The lines of a body: payloads without their trailing newline; special packets as their four digits ("0000").
    /// Stops at the first malformed or truncated packet.
    /// </summary>
    public static List<string> ReadAll(byte[] body)
    {
        var lines = new List<string>();
        var i = 0;
        while (i + 4 <= body.Length && int.TryParse(Encoding.ASCII.GetString(body, i, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var length))
        {
            if (length < 4)
            {
                lines.Add(length.ToString("x4", CultureInfo.InvariantCulture));
                i += 4;
                continue;
            }
            if (i + length > body.Length)
            {
                break;
            }
            lines.Add(Encoding.UTF8.GetString(body, i + 4, length - 4).TrimEnd('\n'));
            i += length;
        }
        return lines;
    }
}
