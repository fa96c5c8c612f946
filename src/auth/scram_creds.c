/* placeholder: being written */
extern int placeholder_scram_creds;
