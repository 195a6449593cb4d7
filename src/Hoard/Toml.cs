using System.Globalization;
using System.Text;

namespace Hoard;

/// <summary>
/// A small TOML reader, enough for containerd's config.toml and hosts.toml: tables, arrays of tables, dotted and
/// quoted keys, the four kinds of string, arrays and inline tables. Values come back by their full key path
/// (segments joined with '\0'): a string, a list of values, or any other scalar (number, boolean, date) as its raw
/// text. Elements of arrays of tables are not kept, and no redefinition or type rule is enforced: this reads
/// files that containerd has already accepted, it does not validate them.
/// </summary>
public sealed class Toml
{
    private readonly Dictionary<string, object> _values = new(StringComparer.Ordinal);

    /// <summary>A scalar other than a string, as written (2, true, 1979-05-27).</summary>
    public sealed record Bare(string Text);

    private Toml()
    {
    }

    public IReadOnlyDictionary<string, object> Values => _values;

    /// <summary>The value at a key path (["plugins", "io.containerd.grpc.v1.cri", "registry", "config_path"]), or null.</summary>
    public object? Get(params string[] path) => _values.GetValueOrDefault(string.Join('\0', path));

    /// <summary>Whether any value lies at or under this key path (the table exists and has something in it).</summary>
    public bool HasUnder(params string[] path)
    {
        var prefix = string.Join('\0', path);
        return _values.Keys.Any(k => k == prefix || k.StartsWith(prefix + "\0", StringComparison.Ordinal));
    }

    /// <summary>Parses a document; throws <see cref="FormatException"/> naming the line on malformed input.</summary>
    public static Toml Parse(string text)
    {
        var toml = new Toml();
        new Reader(text, toml._values).Document();
        return toml;
    }

    private sealed class Reader(string text, Dictionary<string, object> values)
    {
        private int _pos;

        public void Document()
        {
            List<string>? table = [];
            while (true)
            {
                SkipBlankLinesAndComments();
                if (_pos >= text.Length)
                {
                    return;
                }
                if (text[_pos] == '[')
                {
                    var arrayOfTables = _pos + 1 < text.Length && text[_pos + 1] == '[';
                    _pos += arrayOfTables ? 2 : 1;
                    SkipSpaces();
                    var header = Key();
                    SkipSpaces();
                    Expect(arrayOfTables ? "]]" : "]");
                    // Values under an array of tables belong to one of its elements: not kept.
                    table = arrayOfTables ? null : header;
                }
                else
                {
                    var key = Key();
                    SkipSpaces();
                    Expect("=");
                    SkipSpaces();
                    var value = Value(table is null ? null : [.. table, .. key]);
                    if (table is not null && value is not null)
                    {
                        values[string.Join('\0', table.Concat(key))] = value;
                    }
                }
                EndOfLine();
            }
        }

        private List<string> Key()
        {
            var segments = new List<string>();
            while (true)
            {
                SkipSpaces();
                if (_pos >= text.Length)
                {
                    throw Error("a key was expected");
                }
                var c = text[_pos];
                if (c == '"')
                {
                    segments.Add(BasicString());
                }
                else if (c == '\'')
                {
                    segments.Add(LiteralString());
                }
                else
                {
                    var start = _pos;
                    while (_pos < text.Length && (char.IsAsciiLetterOrDigit(text[_pos]) || text[_pos] is '_' or '-'))
                    {
                        _pos++;
                    }
                    if (_pos == start)
                    {
                        throw Error($"unexpected '{c}' in a key");
                    }
                    segments.Add(text[start.._pos]);
                }
                SkipSpaces();
                if (_pos < text.Length && text[_pos] == '.')
                {
                    _pos++;
                    continue;
                }
                return segments;
            }
        }

        /// <summary>One value; an inline table's values are recorded under <paramref name="path"/> (null: not kept).</summary>
        private object? Value(List<string>? path)
        {
            if (_pos >= text.Length)
            {
                throw Error("a value was expected");
            }
            if (At("\"\"\""))
            {
                return MultiLineString(basic: true);
            }
            if (At("'''"))
            {
                return MultiLineString(basic: false);
            }
            switch (text[_pos])
            {
                case '"':
                    return BasicString();
                case '\'':
                    return LiteralString();
                case '[':
                    return Array();
                case '{':
                    InlineTable(path);
                    return null;
            }
            var start = _pos;
            while (_pos < text.Length && text[_pos] is not (',' or ']' or '}' or '#' or ' ' or '\t' or '\n' or '\r'))
            {
                _pos++;
            }
            // A date and a time may be separated by one space (1979-05-27 07:32:00).
            if (_pos - start == 10 && text[start + 4] == '-' && _pos + 1 < text.Length && text[_pos] == ' ' && char.IsAsciiDigit(text[_pos + 1]))
            {
                _pos++;
                while (_pos < text.Length && text[_pos] is not (',' or ']' or '}' or '#' or ' ' or '\t' or '\n' or '\r'))
                {
                    _pos++;
                }
            }
            var raw = text[start.._pos];
            if (raw.Length == 0)
            {
                throw Error("a value was expected");
            }
            return new Bare(raw);
        }

        private List<object> Array()
        {
            _pos++;
            var items = new List<object>();
            while (true)
            {
                SkipWhitespaceAndComments();
                if (_pos >= text.Length)
                {
                    throw Error("unterminated array");
                }
                if (text[_pos] == ']')
                {
                    _pos++;
                    return items;
                }
                if (Value(null) is { } item)
                {
                    items.Add(item);
                }
                SkipWhitespaceAndComments();
                if (_pos < text.Length && text[_pos] == ',')
                {
                    _pos++;
                }
                else if (_pos < text.Length && text[_pos] != ']')
                {
                    throw Error("',' or ']' was expected in an array");
                }
            }
        }

        private void InlineTable(List<string>? path)
        {
            _pos++;
            SkipSpaces();
            if (_pos < text.Length && text[_pos] == '}')
            {
                _pos++;
                return;
            }
            while (true)
            {
                var key = Key();
                SkipSpaces();
                Expect("=");
                SkipSpaces();
                List<string>? full = path is null ? null : [.. path, .. key];
                if (Value(full) is { } value && full is not null)
                {
                    values[string.Join('\0', full)] = value;
                }
                SkipSpaces();
                if (_pos < text.Length && text[_pos] == ',')
                {
                    _pos++;
                    continue;
                }
                Expect("}");
                return;
            }
        }

        private string BasicString()
        {
            _pos++;
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= text.Length || text[_pos] is '\n' or '\r')
                {
                    throw Error("unterminated string");
                }
                var c = text[_pos++];
                if (c == '"')
                {
                    return sb.ToString();
                }
                if (c == '\\')
                {
                    Escape(sb);
                }
                else
                {
                    sb.Append(c);
                }
            }
        }

        private string LiteralString()
        {
            _pos++;
            var end = text.IndexOf('\'', _pos);
            var newline = text.IndexOf('\n', _pos);
            if (end < 0 || newline >= 0 && newline < end)
            {
                throw Error("unterminated string");
            }
            var s = text[_pos..end];
            _pos = end + 1;
            return s;
        }

        private string MultiLineString(bool basic)
        {
            var quotes = basic ? "\"\"\"" : "'''";
            _pos += 3;
            // A newline right after the opening quotes is not part of the string.
            if (At("\r\n"))
            {
                _pos += 2;
            }
            else if (At("\n"))
            {
                _pos++;
            }
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= text.Length)
                {
                    throw Error("unterminated multi-line string");
                }
                if (At(quotes))
                {
                    // Up to two more quotes just before the closing ones belong to the string.
                    var extra = 0;
                    while (extra < 2 && _pos + 3 + extra < text.Length && text[_pos + 3 + extra] == quotes[0])
                    {
                        extra++;
                    }
                    sb.Append(quotes[0], extra);
                    _pos += 3 + extra;
                    return sb.ToString();
                }
                var c = text[_pos++];
                if (basic && c == '\\')
                {
                    if (_pos < text.Length && text[_pos] is ' ' or '\t' or '\r' or '\n')
                    {
                        // A line-ending backslash swallows the newline and the whitespace after it.
                        while (_pos < text.Length && char.IsWhiteSpace(text[_pos]))
                        {
                            _pos++;
                        }
                        continue;
                    }
                    Escape(sb);
                }
                else
                {
                    sb.Append(c);
                }
            }
        }

        private void Escape(StringBuilder sb)
        {
            if (_pos >= text.Length)
            {
                throw Error("unterminated escape");
            }
            var e = text[_pos++];
            switch (e)
            {
                case 'b': sb.Append('\b'); break;
                case 't': sb.Append('\t'); break;
                case 'n': sb.Append('\n'); break;
                case 'f': sb.Append('\f'); break;
                case 'r': sb.Append('\r'); break;
                case 'e': sb.Append('\u001b'); break;
                case '"': sb.Append('"'); break;
                case '\\': sb.Append('\\'); break;
                case 'u' or 'U':
                    var digits = e == 'u' ? 4 : 8;
                    if (_pos + digits > text.Length || !int.TryParse(text.AsSpan(_pos, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var cp)
                        || cp > 0x10FFFF || cp is >= 0xD800 and <= 0xDFFF)
                    {
                        throw Error("bad \\u escape");
                    }
                    sb.Append(char.ConvertFromUtf32(cp));
                    _pos += digits;
                    break;
                default:
                    throw Error($"unknown escape '\\{e}'");
            }
        }

        private bool At(string s) => string.CompareOrdinal(text, _pos, s, 0, s.Length) == 0;

        private void Expect(string s)
        {
            if (!At(s))
            {
                throw Error($"'{s}' was expected");
            }
            _pos += s.Length;
        }

        private void SkipSpaces()
        {
            while (_pos < text.Length && text[_pos] is ' ' or '\t')
            {
                _pos++;
            }
        }

        private void SkipComment()
        {
            if (_pos < text.Length && text[_pos] == '#')
            {
                while (_pos < text.Length && text[_pos] != '\n')
                {
                    _pos++;
                }
            }
        }

        private void SkipWhitespaceAndComments()
        {
            while (true)
            {
                while (_pos < text.Length && char.IsWhiteSpace(text[_pos]))
                {
                    _pos++;
                }
                if (_pos < text.Length && text[_pos] == '#')
                {
                    SkipComment();
                    continue;
                }
                return;
            }
        }

        private void SkipBlankLinesAndComments() => SkipWhitespaceAndComments();

        private void EndOfLine()
        {
            SkipSpaces();
            SkipComment();
            if (_pos < text.Length && text[_pos] == '\r')
            {
                _pos++;
            }
            if (_pos < text.Length && text[_pos] != '\n')
            {
                throw Error($"unexpected '{text[_pos]}' after a value");
            }
        }

        private FormatException Error(string what)
        {
            var line = 1 + text.AsSpan(0, Math.Min(_pos, text.Length)).Count('\n');
            return new FormatException($"line {line}: {what}");
        }
    }
}
