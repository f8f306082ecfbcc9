// module tls
