/* placeholder: being written */
extern int placeholder_jid;
