/// What went wrong talking to RabbitMQ. Descriptions never contain a password.
public enum AMQPError: Error, Sendable, CustomStringConvertible, Equatable {
    case invalidURL(reason: String, url: String)
    /// TCP or TLS connect, or the AMQP handshake, failed.
    case connectionFailed(host: String, port: Int, reason: String)
    /// The broker refused the login (wrong user or password, or no access to the vhost).
    case loginRefused(user: String, vhost: String, reason: String)
    /// The broker closed the channel or the connection with a reply code, e.g. 406 PRECONDITION_FAILED
    /// when a queue is redeclared with other arguments, or 404 NOT_FOUND for a missing exchange.
    case brokerClosed(code: Int, text: String, context: String)
    /// A rabbitmq-c library error (socket error, timeout, unexpected frame).
    case library(status: Int32, message: String, context: String)
    /// The broker nacked a publish: it could not take responsibility for the message.
    case publishNacked(messageId: String?)
    /// A mandatory publish matched no queue. The message would have been lost.
    case unroutable(exchange: String, routingKey: String, replyText: String)
    /// The publisher or consumer was shut down before the operation finished.
    case shutdown
    /// The publisher gave up after its retry budget.
    case publishTimedOut(messageId: String?, after: Duration)
    /// The message cannot be encoded as AMQP (a property or name over the 255-byte limit of a short
    /// string). Refused before anything is sent: the connection is fine and no retry helps.
    case invalidMessage(reason: String)

    public var description: String {
        switch self {
        case let .invalidURL(reason, url):
            return "invalid AMQP URL \(url): \(reason)"
        case let .connectionFailed(host, port, reason):
            return "could not connect to RabbitMQ at \(host):\(port): \(reason). Is the broker running and reachable?"
        case let .loginRefused(user, vhost, reason):
            return
                "RabbitMQ refused login for user \(user) on vhost \(vhost): \(reason). Check the credentials and the user's permissions."
        case let .brokerClosed(code, text, context):
            return "RabbitMQ closed the channel during \(context): \(code) \(text)"
        case let .library(status, message, context):
            return "AMQP error during \(context): \(message) (status \(status))"
        case let .publishNacked(id):
            return "RabbitMQ nacked the publish of message \(id ?? "-"); it was not stored. Retry it."
        case let .unroutable(exchange, key, text):
            return
                "message to exchange '\(exchange)' with routing key '\(key)' matched no queue (\(text)); declare the topology first"
        case .shutdown:
            return "the AMQP client was shut down"
        case let .publishTimedOut(id, after):
            return "publish of message \(id ?? "-") was not confirmed within \(after)"
        case let .invalidMessage(reason):
            return "message refused before sending: \(reason)"
        }
    }

    /// Errors after which reconnecting cannot help.
    var isPermanent: Bool {
        switch self {
        case .invalidURL, .loginRefused, .invalidMessage: return true
        case let .brokerClosed(code, _, _): return code == 403 || code == 406 || code == 404
        default: return false
        }
    }
}
