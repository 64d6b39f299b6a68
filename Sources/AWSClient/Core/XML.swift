/// A small XML reader for AWS responses (Query and REST-XML protocols).
///
/// Hand-written on purpose: FoundationXML needs libxml2 at run time, and AWS responses use a small,
/// well-formed subset. It handles the XML declaration, comments, processing instructions, elements,
/// attributes, text, the five predefined entities, numeric character references and CDATA. It
/// rejects DTDs (no entity expansion, so no billion-laughs) and limits nesting depth.
/// Namespace prefixes are dropped from element names (`<ns:Foo>` is `Foo`).
public enum XML {
    public struct Element: Sendable, Equatable, CustomStringConvertible {
        public var name: String
        public var attributes: [String: String]
        public var children: [Element]
        /// The element's own text (text and CDATA directly inside it), entity-decoded.
        public var text: String

        public init(name: String, attributes: [String: String] = [:], children: [Element] = [], text: String = "") {
            self.name = name
            self.attributes = attributes
            self.children = children
            self.text = text
        }

        /// The first child element named `name`.
        public subscript(_ name: String) -> Element? { children.first { $0.name == name } }

        /// The element reached by following child names, e.g. `root[path: "Error", "Code"]`.
        public subscript(path names: String...) -> Element? {
            var current: Element? = self
            for name in names { current = current?[name] }
            return current
        }

        /// Every child element named `name`.
        public func all(_ name: String) -> [Element] { children.filter { $0.name == name } }

        /// The text of the first child named `name`, or nil if there is none.
        public func string(_ name: String) -> String? { self[name]?.text }

        /// The items of a list-valued child: `<name><item>…</item><item>…</item></name>` (EC2 uses
        /// `item`, other Query services `member`). Empty if the child is absent.
        public func list(_ name: String, item: String = "item") -> [Element] { self[name]?.all(item) ?? [] }

        /// Depth-first search for the first descendant (or self) named `name`.
        public func first(named name: String) -> Element? {
            if self.name == name { return self }
            for child in children {
                if let found = child.first(named: name) { return found }
            }
            return nil
        }

        public var description: String {
            if children.isEmpty { return "<\(name)>\(text)</\(name)>" }
            return "<\(name)>" + children.map(\.description).joined() + "</\(name)>"
        }
    }

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var reason: String
        /// Byte offset where parsing stopped.
        public var offset: Int
        public var description: String { "malformed XML at byte \(offset): \(reason)" }
    }

    /// Parses a document and returns its root element.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 256) throws(ParseError) -> Element {
        var parser = Parser(bytes: bytes, maxDepth: maxDepth)
        return try parser.document()
    }

    public static func parse(_ text: String) throws(ParseError) -> Element {
        try parse(Array(text.utf8))
    }

    /// Escapes text for an element body or attribute value.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    private struct Parser {
        let bytes: [UInt8]
        let maxDepth: Int
        var i = 0

        init(bytes: [UInt8], maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        func fail(_ reason: String) -> ParseError { ParseError(reason: reason, offset: i) }

        func peek(_ s: String) -> Bool {
            let u = Array(s.utf8)
            guard i + u.count <= bytes.count else { return false }
            return bytes[i..<(i + u.count)].elementsEqual(u)
        }

        mutating func skipWhitespace() {
            while i < bytes.count, isSpace(bytes[i]) { i += 1 }
        }

        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0d }

        mutating func skip(past terminator: String) throws(ParseError) {
            let t = Array(terminator.utf8)
            while i + t.count <= bytes.count {
                if bytes[i..<(i + t.count)].elementsEqual(t) {
                    i += t.count
                    return
                }
                i += 1
            }
            throw fail("unterminated construct, expected \(terminator)")
        }

        /// Skips the prolog or trailing misc: whitespace, `<?…?>`, comments. Rejects DTDs.
        mutating func skipMisc() throws(ParseError) {
            while true {
                skipWhitespace()
                if peek("<?") {
                    try skip(past: "?>")
                } else if peek("<!--") {
                    try skip(past: "-->")
                } else if peek("<!DOCTYPE") || peek("<!doctype") {
                    throw fail("DTDs are not accepted")
                } else {
                    return
                }
            }
        }

        mutating func document() throws(ParseError) -> Element {
            if peek("\u{FEFF}") { i += 3 }
            try skipMisc()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "<") else { throw fail("no root element") }
            let root = try element(depth: 0)
            try skipMisc()
            guard i == bytes.count else { throw fail("content after the root element") }
            return root
        }

        mutating func name() throws(ParseError) -> String {
            let start = i
            while i < bytes.count {
                let b = bytes[i]
                if isSpace(b) || b == UInt8(ascii: ">") || b == UInt8(ascii: "/") || b == UInt8(ascii: "=") { break }
                i += 1
            }
            guard i > start else { throw fail("expected a name") }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        static func localName(_ qualified: String) -> String {
            guard let colon = qualified.lastIndex(of: ":") else { return qualified }
            return String(qualified[qualified.index(after: colon)...])
        }

        mutating func element(depth: Int) throws(ParseError) -> Element {
            guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
            i += 1  // "<"
            let qualifiedName = try name()
            var element = Element(name: Self.localName(qualifiedName))
            // Attributes.
            while true {
                skipWhitespace()
                guard i < bytes.count else { throw fail("unterminated start tag <\(qualifiedName)>") }
                if bytes[i] == UInt8(ascii: "/") {
                    guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: ">") else { throw fail("expected />") }
                    i += 2
                    return element
                }
                if bytes[i] == UInt8(ascii: ">") {
                    i += 1
                    break
                }
                let attribute = try name()
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else {
                    throw fail("expected = after \(attribute)")
                }
                i += 1
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") || bytes[i] == UInt8(ascii: "'") else {
                    throw fail("expected a quoted value for \(attribute)")
                }
                let quote = bytes[i]
                i += 1
                let start = i
                while i < bytes.count, bytes[i] != quote { i += 1 }
                guard i < bytes.count else { throw fail("unterminated attribute value") }
                element.attributes[attribute] = try decodeEntities(bytes[start..<i])
                i += 1
            }
            // Content.
            var text: [UInt8] = []
            while true {
                guard i < bytes.count else { throw fail("unterminated element <\(qualifiedName)>") }
                if bytes[i] != UInt8(ascii: "<") {
                    let start = i
                    while i < bytes.count, bytes[i] != UInt8(ascii: "<") { i += 1 }
                    text += Array(try decodeEntities(bytes[start..<i]).utf8)
                } else if peek("</") {
                    i += 2
                    let closing = try name()
                    skipWhitespace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ">") else { throw fail("expected > in end tag") }
                    i += 1
                    guard closing == qualifiedName else {
                        throw fail("</\(closing)> closes <\(qualifiedName)>")
                    }
                    element.text = String(decoding: text, as: UTF8.self)
                    return element
                } else if peek("<![CDATA[") {
                    i += 9
                    let start = i
                    try skip(past: "]]>")
                    text += bytes[start..<(i - 3)]
                } else if peek("<!--") {
                    try skip(past: "-->")
                } else if peek("<?") {
                    try skip(past: "?>")
                } else if peek("<!") {
                    throw fail("unexpected markup declaration")
                } else {
                    element.children.append(try self.element(depth: depth + 1))
                }
            }
        }

        func decodeEntities(_ raw: ArraySlice<UInt8>) throws(ParseError) -> String {
            guard raw.contains(UInt8(ascii: "&")) else { return String(decoding: raw, as: UTF8.self) }
            var out: [UInt8] = []
            out.reserveCapacity(raw.count)
            var j = raw.startIndex
            while j < raw.endIndex {
                guard raw[j] == UInt8(ascii: "&") else {
                    out.append(raw[j])
                    j += 1
                    continue
                }
                guard let semicolon = raw[j...].firstIndex(of: UInt8(ascii: ";")), semicolon - j <= 12 else {
                    throw fail("unterminated entity reference")
                }
                let entity = String(decoding: raw[(j + 1)..<semicolon], as: UTF8.self)
                switch entity {
                case "lt": out.append(UInt8(ascii: "<"))
                case "gt": out.append(UInt8(ascii: ">"))
                case "amp": out.append(UInt8(ascii: "&"))
                case "quot": out.append(UInt8(ascii: "\""))
                case "apos": out.append(UInt8(ascii: "'"))
                default:
                    var scalarValue: UInt32?
                    if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                        scalarValue = UInt32(entity.dropFirst(2), radix: 16)
                    } else if entity.hasPrefix("#") {
                        scalarValue = UInt32(entity.dropFirst(), radix: 10)
                    }
                    guard let value = scalarValue, let scalar = Unicode.Scalar(value) else {
                        throw fail("unknown entity &\(entity);")
                    }
                    out += Array(String(Character(scalar)).utf8)
                }
                j = semicolon + 1
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}
