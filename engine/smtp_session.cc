#include "engine/smtp_session.h"
